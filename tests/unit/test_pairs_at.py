"""A step at one timeframe takes the pairs that trade there and have bars there; the others
are skipped with one line each, or, when named explicitly, refused in one line. Before, one
daily pair in the universe failed every hourly training and retraining run."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pytest

from mlcore.config import AppConfig, load_config
from mlcore.data import Catalog, FileProvider, build_catalog, ingest, pairs_at
from mlcore.errors import ConfigError, MissingDataError, MissingInputError
from tests.conftest import CONFIG_ROOT, config_with

RULES = {"tick_size": 0.01, "lot_step": 1, "min_lot": 1, "min_notional_usd": 1, "margin_rate": 0.5}
STOCK = {"asset_class": "equity", "calendar": "xnys", "quote_currency": "USD"}


@pytest.fixture
def both(tmp_path: Path, archive: Path) -> tuple[AppConfig, Catalog]:
    root = config_with(tmp_path, {"universe": {
        "instruments": {"KO": STOCK, "PEP": STOCK},
        "trading": {"KO": RULES, "PEP": RULES},
        "pairs": [
            {"pair_id": "XAU_XAG", "leg_a": "XAU/USD", "leg_b": "XAG/USD"},
            {"pair_id": "KO_PEP", "leg_a": "KO", "leg_b": "PEP", "timeframes": ["1day"]},
            {"pair_id": "EUR_GBP", "leg_a": "EUR/USD", "leg_b": "GBP/USD"},
        ],
    }})  # fmt: skip
    cfg = load_config(root, "dev")
    ts = pd.date_range("2024-01-02", periods=48, freq="h")
    for sym, level in (("XAU/USD", 2000.0), ("XAG/USD", 25.0)):
        close = level + np.arange(48) * 0.01
        path = tmp_path / f"{sym.replace('/', '')}.csv"
        frame = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M"), "open": close,
                              "high": close, "low": close, "close": close})  # fmt: skip
        frame.to_csv(path, index=False)
        ingest(cfg, FileProvider(path).read("1h"), sym, "1h")
    build_catalog(cfg)
    return cfg, Catalog(cfg)


def test_pairs_without_bars_or_of_another_timeframe_are_skipped_with_a_line(
    both: tuple[AppConfig, Catalog],
) -> None:
    cfg, cat = both
    choice = pairs_at(cfg, cat, "1h")
    assert choice.pair_ids == ["XAU_XAG"]
    assert choice.skipped == [
        "pair KO_PEP skipped: it trades at 1day, not 1h",
        "pair EUR_GBP skipped: no included 1h bars of EUR/USD and GBP/USD in the catalog "
        "(ingest them, then `mlcore catalog build`)",
    ]


def test_a_pair_named_explicitly_is_refused_not_skipped(both: tuple[AppConfig, Catalog]) -> None:
    cfg, cat = both
    with pytest.raises(MissingInputError, match="pair KO_PEP: it trades at 1day, not 1h"):
        pairs_at(cfg, cat, "1h", ["KO_PEP"])
    with pytest.raises(MissingDataError, match="pair EUR_GBP: no included 1h bars"):
        pairs_at(cfg, cat, "1h", ["EUR_GBP"])
    with pytest.raises(MissingInputError, match=r"\['NOPE_X'\] are not in universe.yaml"):
        pairs_at(cfg, cat, "1h", ["NOPE_X"])
    assert pairs_at(cfg, cat, "1h", ["XAU_XAG"]).pair_ids == ["XAU_XAG"]


def test_no_pair_with_bars_is_one_error_naming_each_reason(both: tuple[AppConfig, Catalog]) -> None:
    cfg, cat = both
    with pytest.raises(MissingDataError) as caught:
        pairs_at(cfg, cat, "1day")
    text = str(caught.value)
    assert "no pair of universe.yaml has 1day bars to use" in text
    assert "pair KO_PEP skipped: no included 1day bars of KO and PEP" in text
    assert "pair XAU_XAG skipped" in text


def test_a_timeframe_without_a_policy_is_one_line_naming_the_key(
    both: tuple[AppConfig, Catalog],
) -> None:
    """1h and 1day are shipped; 4h is refused naming the file, the key and what to add."""
    cfg, _ = both
    assert cfg.core.labels_at("1day").ai1.entry_z == 1.5
    assert cfg.backtest.execution_at("1day").max_hold_bars == 40
    with pytest.raises(ConfigError) as caught:
        cfg.core.labels_at("4h")
    assert caught.value.code == "CONFIG_TIMEFRAME_POLICY_MISSING"
    assert caught.value.message.startswith(
        "core_policy.yaml: key 'labels' has no entry for timeframe '4h' (it has 1h, 1day): add one"
    )
    with pytest.raises(ConfigError, match=r"backtest_policy\.yaml: key 'execution'"):
        cfg.backtest.execution_at("4h")


def test_named_pairs_come_in_universe_order(both: tuple[AppConfig, Catalog]) -> None:
    """The data hash and model files depend on the pairs' order: a rebuild names them sorted."""
    cfg, _ = both

    class EveryLegHasBars:
        def partitions(self, timeframe: str, symbol: str) -> list[dict[str, str]]:
            return [{"month": "2024-01"}]

    everything = cast(Catalog, EveryLegHasBars())
    assert pairs_at(cfg, everything, "1h", ["EUR_GBP", "XAU_XAG"]).pair_ids == [
        "XAU_XAG",
        "EUR_GBP",
    ]
    assert pairs_at(cfg, everything, "1h").pair_ids == ["XAU_XAG", "EUR_GBP"]


def test_training_at_a_timeframe_without_a_policy_is_refused_before_looking_for_bars(
    both: tuple[AppConfig, Catalog],
) -> None:
    """Before, `train --timeframe 4h` said "no pair has 4h bars" (exit 65): a user ingested
    4h bars only to be refused for the missing label policy after."""
    from mlcore.training import train_models

    cfg, cat = both
    with pytest.raises(ConfigError) as caught:
        train_models(cfg, cat, "4h", direction=False)
    assert caught.value.code == "CONFIG_TIMEFRAME_POLICY_MISSING"


@pytest.mark.parametrize("file", ["retrain_policy", "serving_policy"])
def test_a_scheduled_or_served_timeframe_without_a_policy_is_refused_at_load(
    tmp_path: Path, file: str
) -> None:
    """`retrain_policy.yaml timeframe: 4h` passed `config check`; every scheduled run failed."""
    root = config_with(tmp_path, {file: {"timeframe": "4h"}})
    with pytest.raises(ConfigError) as caught:
        load_config(root, "dev")
    assert caught.value.code == "CONFIG_TIMEFRAME_POLICY_MISSING"
    assert caught.value.message.startswith(f"{file}.yaml: key 'timeframe' is 4h, but ")


def test_a_served_timeframe_without_its_signal_validity_is_refused_at_load(
    tmp_path: Path,
) -> None:
    """signal_valid_seconds is per timeframe: a served timeframe given labels and execution
    rules but no validity is refused at load naming the key (a number is one for all)."""
    cfg = load_config(CONFIG_ROOT, "dev")
    labels = cfg.core.labels_at("1h").model_dump(mode="json")
    execution = cfg.backtest.execution_at("1h").model_dump(mode="json")
    four = {"core_policy": {"labels": {"4h": labels}},
            "backtest_policy": {"execution": {"4h": execution}}}  # fmt: skip
    root = config_with(tmp_path, {**four, "serving_policy": {"timeframe": "4h"}})
    with pytest.raises(ConfigError) as caught:
        load_config(root, "dev")
    assert caught.value.code == "CONFIG_TIMEFRAME_POLICY_MISSING"
    assert caught.value.message.startswith("serving_policy.yaml: key 'timeframe' is 4h, but ")
    assert "'signal_valid_seconds' has no entry for timeframe '4h'" in caught.value.message
    flat = config_with(tmp_path / "flat", {**four, "serving_policy": {
        "timeframe": "4h", "signal_valid_seconds": 600}})  # fmt: skip
    assert load_config(flat, "dev").serving.valid_seconds_at("4h") == 600
