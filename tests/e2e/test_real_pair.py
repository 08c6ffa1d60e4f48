"""A real pair: KO and PEP daily closes (skfolio's bundled S&P 500 data set) through CSV files,
the file provider, DQ, the catalog, the feature cache and the labels; too few events to train is
one clear line. Training, the backtest and the engine's reconciliation on these prices are
walked as a new user would, through the CLI, in test_new_user.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skfolio.datasets import load_sp500_dataset

from mlcore.config import AppConfig, load_config
from mlcore.data import Catalog, FileProvider, build_catalog, ingest
from mlcore.features import build_pair_features, load_pair_features
from mlcore.labels import ai1_events
from tests.conftest import CONFIG_ROOT


def _config_with_pair(tmp_path: Path) -> Path:
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    path = root / "base" / "universe.yaml"
    text = path.read_text()
    text = text.replace(
        "    GOOG: {asset_class: equity, calendar: xnys, quote_currency: USD}",
        "    GOOG: {asset_class: equity, calendar: xnys, quote_currency: USD}\n"
        "    KO: {asset_class: equity, calendar: xnys, quote_currency: USD}\n"
        "    PEP: {asset_class: equity, calendar: xnys, quote_currency: USD}",
    )
    rules = "{tick_size: 0.01, lot_step: 1, min_lot: 1, min_notional_usd: 1, margin_rate: 0.5}"
    text = text.replace(
        "    GOOG: {tick_size", f"    KO: {rules}\n    PEP: {rules}\n    GOOG: {{tick_size"
    )
    text = text.replace(
        "    - {pair_id: BTC_ETH, leg_a: BTC/USD, leg_b: ETH/USD}",
        "    - {pair_id: BTC_ETH, leg_a: BTC/USD, leg_b: ETH/USD}\n"
        "    - {pair_id: KO_PEP, leg_a: KO, leg_b: PEP}",
    )
    path.write_text(text)
    return root


def _ingest_ko_pep(tmp_path: Path, start: str = "2008-01-01") -> AppConfig:
    prices = load_sp500_dataset().loc[start:]
    cfg = load_config(_config_with_pair(tmp_path), "dev")
    for sym in ("KO", "PEP"):
        close = prices[sym]
        # The data set holds adjusted closes only: each bar is open = high = low = close.
        csv = pd.DataFrame(
            {"Date": close.index.strftime("%Y-%m-%d"), "Open": close, "High": close,
             "Low": close, "Close": close}
        )  # fmt: skip
        path = tmp_path / f"{sym}.csv"
        csv.to_csv(path, index=False)
        report = ingest(cfg, FileProvider(path).read("1day"), sym, "1day")
        assert report.rows_rejected == 0
        assert report.flags["outlier"] == 0
    build_catalog(cfg)
    return cfg


def test_ko_pep_features_and_labels_from_csv(tmp_path: Path, archive: Path) -> None:
    cfg = _ingest_ko_pep(tmp_path)
    cat = Catalog(cfg)
    pair = next(p for p in cfg.universe.pairs if p.pair_id == "KO_PEP")
    built = build_pair_features(cfg, cat, pair, "1day")
    assert built.aligned_bars > 3_500
    feats = load_pair_features(cfg, "KO_PEP", "1day")
    body = feats.groupby("segment").apply(lambda s: s.iloc[500:], include_groups=False)
    assert np.isfinite(body.drop(columns="ts").to_numpy()).all()
    assert 0.2 < float(np.median(body["beta"])) < 2.0
    assert float(np.median(body["rho_rolling"])) > 0.3  # two soft-drink makers move together
    ts = pd.DatetimeIndex(feats["ts"]).as_unit("ns").asi8
    events = ai1_events(
        ts,
        feats["z"].to_numpy(),
        np.abs(feats["dz_ema"].to_numpy()),
        cfg.core.labels_at("1day").ai1,
    )
    labelled = events[events["label"] >= 0]
    assert len(labelled) > 20
    assert 0.0 < (labelled["label"] == 1).mean() < 1.0


def test_too_few_events_to_train_is_one_clear_line(
    tmp_path: Path, archive: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from typer.testing import CliRunner

    from mlcore.cli import app

    # Hourly label thresholds on 15 years of daily bars: too few AI1 events of one kind.
    cfg = _ingest_ko_pep(tmp_path)
    args = ["train", "--timeframe", "1day", "--pair", "KO_PEP", "--no-direction",
            "--config-root", str(cfg.config_root)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    captured = capfd.readouterr()
    text = result.output + captured.err + captured.out
    assert result.exit_code == 65
    assert "error TRAIN_INPUT_INVALID: AI1 (" in text and "single class" in text
    assert "Traceback" not in text
