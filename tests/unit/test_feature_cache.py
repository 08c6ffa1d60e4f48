"""Feature cache: months reused only when nothing before them changed; equal to a full run."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from mlcore.config import AppConfig, PairSpec
from mlcore.data import Catalog, FetchResult, build_catalog, ingest
from mlcore.features import (
    PAIR_FEATURES,
    SINGLE_FEATURES,
    build_pair_features,
    build_symbol_features,
    load_pair_features,
    load_symbol_features,
    pair_batch_values,
    pair_feature_hash,
    single_features,
)

PAIR = PairSpec(pair_id="BTC_ETH", leg_a="BTC/USD", leg_b="ETH/USD")


def _legs(n: int = 24 * 120, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    lb = 7.5 + np.cumsum(rng.normal(0, 0.004, n))
    s = np.zeros(n)
    for t in range(1, n):
        s[t] = 0.96 * s[t - 1] + rng.normal(0, 0.002)
    la = 3.0 + 1.1 * lb + s

    def frame(logc: np.ndarray) -> pd.DataFrame:
        c = np.exp(logc)
        o = np.concatenate([[c[0]], c[:-1]])
        return pd.DataFrame(
            {
                "ts": ts,
                "open": o,
                "high": np.maximum(o, c) * 1.001,
                "low": np.minimum(o, c) * 0.999,
                "close": c,
                "volume": 1.0,
            }
        )

    return frame(la), frame(lb)


def _ingest(cfg: AppConfig, a: pd.DataFrame, b: pd.DataFrame) -> Catalog:
    for sym, bars in ((PAIR.leg_a, a), (PAIR.leg_b, b)):
        ingest(cfg, FetchResult(bars=bars, source="t", rows_read=len(bars)), sym, "1h")
    build_catalog(cfg)
    return Catalog(cfg)


def _full(cat: Catalog, cfg: AppConfig) -> np.ndarray:
    a, b = cat.load_bars("1h", PAIR.leg_a), cat.load_bars("1h", PAIR.leg_b)
    bars = np.column_stack([a.high, a.low, a.close, b.high, b.low, b.close])
    return pair_batch_values(bars, cfg.features.pair)


def test_build_then_reuse_equals_full_batch(cfg: AppConfig) -> None:
    cat = _ingest(cfg, *_legs())
    first = build_pair_features(cfg, cat, PAIR, "1h")
    assert first.months_computed == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert first.months_cached == []
    assert first.aligned_bars == 24 * 120
    again = build_pair_features(cfg, cat, PAIR, "1h")
    assert again.months_computed == []
    assert again.months_cached == first.months_computed
    got = load_pair_features(cfg, PAIR.pair_id, "1h")
    np.testing.assert_array_equal(got[list(PAIR_FEATURES)].to_numpy(), _full(cat, cfg))
    folder = cfg.paths.features / "1h" / "BTC_ETH" / "2024-02"
    fhash = pair_feature_hash(cfg)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{fhash}{ext}" for ext in (".meta.json", ".parquet", ".state.npz")
    )
    assert (cfg.paths.features / "1h" / "BTC_ETH" / "preprocess_report.json").exists()


def test_changed_bar_recomputes_its_month_and_later_only(cfg: AppConfig) -> None:
    a, b = _legs()
    _ingest(cfg, a, b)
    build_pair_features(cfg, Catalog(cfg), PAIR, "1h")
    i = int(np.flatnonzero(a["ts"] == pd.Timestamp("2024-03-10 05:00", tz="UTC"))[0])
    a.loc[i, "close"] *= 1.0003
    a.loc[i, "high"] = max(a.loc[i, "high"], a.loc[i, "close"])
    cat = _ingest(cfg, a.iloc[[i]], b.iloc[[i]])
    report = build_pair_features(cfg, cat, PAIR, "1h")
    assert report.months_cached == ["2024-01", "2024-02"]
    assert report.months_computed == ["2024-03", "2024-04"]
    got = load_pair_features(cfg, PAIR.pair_id, "1h")
    np.testing.assert_array_equal(got[list(PAIR_FEATURES)].to_numpy(), _full(cat, cfg))


def test_lost_month_is_rebuilt_from_the_previous_state(cfg: AppConfig) -> None:
    cat = _ingest(cfg, *_legs())
    build_pair_features(cfg, cat, PAIR, "1h")
    fhash = pair_feature_hash(cfg)
    (cfg.paths.features / "1h" / "BTC_ETH" / "2024-02" / f"{fhash}.meta.json").unlink()
    report = build_pair_features(cfg, cat, PAIR, "1h")
    assert report.months_computed == ["2024-02"]
    got = load_pair_features(cfg, PAIR.pair_id, "1h")
    np.testing.assert_array_equal(got[list(PAIR_FEATURES)].to_numpy(), _full(cat, cfg))


def test_other_windows_get_their_own_hash(cfg: AppConfig) -> None:
    cat = _ingest(cfg, *_legs())
    build_pair_features(cfg, cat, PAIR, "1h")
    other = cfg.features.model_copy(
        update={"pair": cfg.features.pair.model_copy(update={"z_window": 48})}
    )
    cfg2 = type(cfg)(**{**cfg.__dict__, "features": other})
    assert pair_feature_hash(cfg2) != pair_feature_hash(cfg)
    report = build_pair_features(cfg2, cat, PAIR, "1h")
    assert report.months_cached == []
    assert len(report.months_computed) == 4


def test_missing_leg_is_a_clear_error(cfg: AppConfig) -> None:
    a, _ = _legs()
    ingest(cfg, FetchResult(bars=a, source="t", rows_read=len(a)), PAIR.leg_a, "1h")
    build_catalog(cfg)
    with pytest.raises(ValueError, match=r"no included bars for ETH/USD 1h"):
        build_pair_features(cfg, Catalog(cfg), PAIR, "1h")


def test_symbol_features_cache_equals_a_full_run(cfg: AppConfig) -> None:
    a, b = _legs()
    cat = _ingest(cfg, a, b)
    first = build_symbol_features(cfg, cat, "BTC/USD", "1h")
    assert len(first.months_computed) == 4
    assert build_symbol_features(cfg, cat, "BTC/USD", "1h").months_cached == first.months_computed
    got = load_symbol_features(cfg, "BTC/USD", "1h")
    full = single_features(cat.load_bars("1h", "BTC/USD"))
    np.testing.assert_array_equal(
        got[list(SINGLE_FEATURES)].to_numpy(), full[list(SINGLE_FEATURES)].to_numpy()
    )
    assert (cfg.paths.features / "1h" / "BTC_USD" / "preprocess_report.json").exists()


def _quarantine_march(a: pd.DataFrame) -> pd.DataFrame:
    march = a["ts"].dt.month == 3
    drop = a.index[march][100:106]  # a 6-bar gap quarantines March for BTC/USD
    return a.drop(index=drop).reset_index(drop=True)


def test_month_leaving_the_catalog_splits_the_history(cfg: AppConfig) -> None:
    a, b = _legs()
    cat = _ingest(cfg, a, b)
    build_pair_features(cfg, cat, PAIR, "1h")
    # Re-ingest leg A with a long gap in March: the month is quarantined and leaves the catalog.
    for sub in (cfg.paths.raw, cfg.paths.canonical):
        shutil.rmtree(sub / "1h" / "BTC_USD")
    cat = _ingest(cfg, _quarantine_march(a), b)
    report = build_pair_features(cfg, cat, PAIR, "1h")
    assert report.months_cached == ["2024-01", "2024-02"]
    assert report.months_computed == ["2024-04"]
    got = load_pair_features(cfg, PAIR.pair_id, "1h")
    assert not (got["ts"].dt.month == 3).any()  # stale March files are not returned
    assert got.groupby("segment")["ts"].min().dt.month.tolist() == [1, 4]
    april = got[got["segment"] == 1]
    # April starts a new segment with its own warm-up, as a fresh engine would compute it.
    a2, b2 = cat.load_bars("1h", PAIR.leg_a), cat.load_bars("1h", PAIR.leg_b)
    a2, b2 = a2[a2["ts"].dt.month == 4], b2[b2["ts"].dt.month == 4]
    bars = np.column_stack([a2.high, a2.low, a2.close, b2.high, b2.low, b2.close])
    np.testing.assert_array_equal(
        april[list(PAIR_FEATURES)].to_numpy(), pair_batch_values(bars, cfg.features.pair)
    )


def test_damaged_state_is_rebuilt(cfg: AppConfig) -> None:
    a, b = _legs()
    cat = _ingest(cfg, a, b)
    build_pair_features(cfg, cat, PAIR, "1h")
    fhash = pair_feature_hash(cfg)
    (cfg.paths.features / "1h" / "BTC_ETH" / "2024-02" / f"{fhash}.state.npz").write_bytes(b"junk")
    (cfg.paths.features / "1h" / "BTC_ETH" / "2024-03" / f"{fhash}.meta.json").unlink()
    report = build_pair_features(cfg, cat, PAIR, "1h")
    assert report.months_computed == ["2024-01", "2024-02", "2024-03", "2024-04"]
    got = load_pair_features(cfg, PAIR.pair_id, "1h")
    np.testing.assert_array_equal(got[list(PAIR_FEATURES)].to_numpy(), _full(cat, cfg))


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temp_files_of_a_killed_build_are_removed_by_the_next_and_a_live_one_kept(
    cfg: AppConfig,
) -> None:
    """Issue 16: an interrupted features build left its temp files behind for good."""
    import os
    import time

    cat = _ingest(cfg, *_legs())
    build_pair_features(cfg, cat, PAIR, "1h")
    fhash = pair_feature_hash(cfg)
    march = cfg.paths.features / "1h" / "BTC_ETH" / "2024-03"
    # A build killed while writing March's meta: the month has no meta and a temp file
    # named by its dead writer; an older version's unnamed one is hours old.
    (march / f"{fhash}.meta.json").unlink()
    dead = march / f".{fhash}.meta.json.tmp-{_dead_pid()}-0badc0de"
    old = march / f".{fhash}.parquet.tmp-1a2b3c4d"
    live = march / f".{fhash}.parquet.tmp-{os.getpid()}-5eed5eed"
    for path in (dead, old, live):
        path.write_bytes(b"half a file")
    hours_ago = time.time() - 3 * 3600
    os.utime(old, (hours_ago, hours_ago))
    report = build_pair_features(cfg, cat, PAIR, "1h")
    assert report.months_computed == ["2024-03"]
    assert not dead.exists() and not old.exists()
    assert live.exists()  # a concurrent writer's (here: this process's) file is left alone
    got = load_pair_features(cfg, PAIR.pair_id, "1h")
    np.testing.assert_array_equal(got[list(PAIR_FEATURES)].to_numpy(), _full(cat, cfg))
