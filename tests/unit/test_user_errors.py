"""Conditions a user causes (a pair without bars, an unknown pair, features never built, a
model folder that is not there) end in one coded error that names the thing and says what to
do, not in an internal error. Each test calls the library function a command calls."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.backtest import PairModels, resolve_model
from mlcore.backtest._inputs import fx_rate
from mlcore.backtest._portfolio import pair_setups
from mlcore.config import AppConfig
from mlcore.data import Catalog, FetchResult, build_catalog, ingest
from mlcore.errors import (
    ConfigError,
    DataQualityError,
    FatalError,
    MissingDataError,
    MissingInputError,
    MlcoreError,
    RetryableError,
)
from mlcore.features import build_symbol_features, load_pair_features
from mlcore.flows import RetrainRefused
from mlcore.flows._serve import serve_retrain
from mlcore.flows._tasks import update_catalog
from mlcore.registry import RegistryError, RegistryUnavailable, rebuild
from mlcore.training import train_models


def _bars(n: int = 24 * 40, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = np.exp(3.0 + np.cumsum(rng.normal(0, 0.003, n)))
    o = np.concatenate([[c[0]], c[:-1]])
    return pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), "open": o,
        "high": np.maximum(o, c) * 1.001, "low": np.minimum(o, c) * 0.999, "close": c,
        "volume": 1.0,
    })  # fmt: skip


def _ingest(cfg: AppConfig, *symbols: str) -> Catalog:
    for i, sym in enumerate(symbols):
        bars = _bars(seed=i)
        ingest(cfg, FetchResult(bars=bars, source="t", rows_read=len(bars)), sym, "1h")
    build_catalog(cfg)
    return Catalog(cfg)


def test_training_a_pair_whose_legs_have_no_bars_names_the_pair(cfg: AppConfig) -> None:
    # Only one leg of EUR_GBP was ingested: the other has no 1h bars.
    cat = _ingest(cfg, "EUR/USD")
    with pytest.raises(MissingDataError) as info:
        train_models(cfg, cat, "1h", pair_ids=["EUR_GBP"])
    err = info.value
    assert err.code == "DATA_PAIR_NO_BARS"
    assert isinstance(err, DataQualityError) and isinstance(err, ValueError)
    assert "pair EUR_GBP" in err.message and "1h bars of GBP/USD" in err.message
    assert "(ingest them, then `mlcore catalog build`)" in err.message
    assert err.details == {"pair_id": "EUR_GBP", "timeframe": "1h"}
    assert "\n" not in str(err)


def test_training_an_unknown_pair_is_a_config_error(cfg: AppConfig) -> None:
    with pytest.raises(FatalError) as never_built:
        Catalog(cfg)  # no catalog at all yet
    assert never_built.value.code == "CATALOG_INDEX_MISSING"
    assert "mlcore catalog build" in never_built.value.message
    with pytest.raises(MissingInputError) as info:
        train_models(cfg, _ingest(cfg), "1h", pair_ids=["NOPE_PAIR"])
    assert info.value.code == "UNIVERSE_PAIR_UNKNOWN"
    assert isinstance(info.value, ConfigError)
    assert "['NOPE_PAIR']" in info.value.message and "universe.yaml" in info.value.message


def test_the_retrain_catalog_step_skips_every_pair_without_bars_naming_it(cfg: AppConfig) -> None:
    _ingest(cfg, "XAU/USD", "XAG/USD", "BTC/USD")
    summary = update_catalog.fn(cfg, "1h")
    assert summary["pairs"] == ["XAU_XAG"]
    assert summary["skipped"] == [
        "pair EUR_GBP skipped: no included 1h bars of EUR/USD and GBP/USD in the catalog "
        "(ingest them, then `mlcore catalog build`)",
        "pair BTC_ETH skipped: no included 1h bars of ETH/USD in the catalog (ingest them, "
        "then `mlcore catalog build`)",
    ]


def test_the_retrain_catalog_step_without_any_pair_names_every_reason(cfg: AppConfig) -> None:
    _ingest(cfg, "BTC/USD")
    with pytest.raises(MissingDataError) as info:
        update_catalog.fn(cfg, "1h")
    err = info.value
    assert err.code == "DATA_PAIR_NO_BARS"
    assert "no pair of universe.yaml has 1h bars to use" in err.message
    for pair in ("XAU_XAG", "EUR_GBP", "BTC_ETH"):
        assert f"pair {pair} skipped" in err.message


def test_symbol_without_bars_and_features_never_built(cfg: AppConfig) -> None:
    cat = _ingest(cfg, "EUR/USD")
    with pytest.raises(MissingDataError) as info:
        build_symbol_features(cfg, cat, "BTC/USD", "1h")
    assert info.value.code == "DATA_SYMBOL_NO_BARS"
    assert "BTC/USD 1h" in info.value.message and "ingest 1h bars" in info.value.message
    with pytest.raises(MissingDataError) as info:
        load_pair_features(cfg, "EUR_GBP", "1h")
    assert info.value.code == "FEATURES_CACHE_MISSING"
    assert "EUR_GBP" in info.value.message and "mlcore features build --timeframe 1h" in (
        info.value.message
    )


def test_missing_model_folders(cfg: AppConfig, tmp_path: Path) -> None:
    with pytest.raises(MissingInputError) as info:
        resolve_model(cfg, None)
    assert info.value.code == "MODEL_VERSION_NONE" and "mlcore train" in info.value.message
    with pytest.raises(MissingInputError) as info:
        resolve_model(cfg, "20990101_0000_nope")
    assert info.value.code == "MODEL_VERSION_NOT_FOUND"
    assert "'20990101_0000_nope'" in info.value.message
    with pytest.raises(MissingInputError) as info:
        PairModels.load(tmp_path / "gone")
    assert info.value.code == "MODEL_VERSION_NOT_FOUND"

    def restore(version: str) -> None:
        raise RegistryError("REGISTRY_VERSION_NOT_FOUND", f"{version} is not registered")

    # A failed restore keeps the code of the first error and says why it was not restored.
    with pytest.raises(MissingInputError, match="not restored: gone is not registered"):
        PairModels.load(tmp_path / "gone", restore=restore)
    with pytest.raises(RegistryError) as rinfo:
        rebuild(cfg, _ingest(cfg), tmp_path / "gone")
    assert rinfo.value.code == "REGISTRY_REBUILD_LINEAGE_UNREADABLE"
    assert str(tmp_path / "gone") in rinfo.value.message


def test_backtest_of_unknown_pairs(cfg: AppConfig) -> None:
    with pytest.raises(MissingInputError) as info:
        pair_setups(cfg, "1h", {"NOPE_PAIR"})
    assert info.value.code == "UNIVERSE_PAIR_UNKNOWN" and "NOPE_PAIR" in info.value.message


def test_serving_the_cron_flow_without_a_server(
    cfg: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        serve_retrain(cfg)
    assert info.value.code == "FLOWS_SERVER_MISSING" and isinstance(info.value, ValueError)
    assert "PREFECT_API_URL" in info.value.message


def test_error_groups_and_old_bases() -> None:
    assert issubclass(RegistryError, FatalError) and issubclass(RegistryError, ValueError)
    assert issubclass(RetrainRefused, FatalError) and issubclass(RetrainRefused, RuntimeError)
    assert issubclass(RegistryUnavailable, RetryableError)
    assert not issubclass(RegistryUnavailable, FatalError)


@pytest.mark.parametrize(
    "err",
    [
        MissingDataError("DATA_PAIR_NO_BARS", "pair X", details={"pair_id": "X"}),
        RegistryError("REGISTRY_VERSION_NOT_FOUND", "v1 is not registered"),
        RetrainRefused("RETRAIN_GUARD_BUSY", "run r1 is still in progress"),
        RegistryUnavailable("REGISTRY_DB_UNAVAILABLE", "down", retry_after_s=5.0),
    ],
)
def test_errors_survive_pickling(err: MlcoreError) -> None:
    # Dask workers and Prefect results send errors across processes.
    back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes, just made
    assert type(back) is type(err)
    assert (back.code, back.message, back.details, back.event_id) == (
        err.code, err.message, err.details, err.event_id,
    )  # fmt: skip
    assert getattr(back, "retry_after_s", None) == getattr(err, "retry_after_s", None)


def test_errors_that_replaced_builtins_print_as_before() -> None:
    # Callers that formatted str(ValueError) into their own coded line keep one code per line.
    err = RegistryError("REGISTRY_VERSION_NOT_FOUND", "v1 is not registered")
    assert str(err) == "v1 is not registered" and err.payload()["code"] == err.code
    assert str(MissingDataError("DATA_PAIR_NO_BARS", "pair X")) == "pair X"
    assert str(FatalError("DATA_FILE_SCHEMA", "bad")) == "DATA_FILE_SCHEMA: bad"


def test_backtest_currency_conversion_without_its_fx_pair() -> None:
    ts = pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC").as_unit("ns").asi8
    with pytest.raises(MissingInputError) as info:
        fx_rate("JPY", "USD", ts, lambda s: _bars().head(0), set(), 3600)
    assert info.value.code == "UNIVERSE_FX_MISSING"
    assert "universe.yaml needs JPY/USD or USD/JPY" in info.value.message
    with pytest.raises(MissingDataError) as info:
        fx_rate("JPY", "USD", ts, lambda s: _bars().head(0), {"USD/JPY"}, 3600)
    assert info.value.code == "DATA_FX_NO_BARS" and "ingest USD/JPY bars" in info.value.message


def test_training_on_too_short_a_history_names_the_pairs(cfg: AppConfig) -> None:
    cat = _ingest(cfg, "EUR/USD", "GBP/USD")
    with pytest.raises(MissingDataError) as info:
        train_models(cfg, cat, "1h", pair_ids=["EUR_GBP"], direction=False)
    assert info.value.code == "DATA_ROWS_TOO_FEW"
    assert "['EUR_GBP'] at 1h" in info.value.message and "ingest more 1h history" in (
        info.value.message
    )
