"""Single-instrument features: known values, streaming equal to batch across restarts, no
look-ahead, clear errors; the three feature levels from feature_order.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.config import AppConfig, load_config
from mlcore.data import FileProvider
from mlcore.errors import ConfigError
from mlcore.features import SINGLE_FEATURES, SingleFeatureEngine, feature_levels, single_features
from tests.conftest import CONFIG_ROOT, third_party_csv


def _bars(n: int = 3_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    o = np.concatenate([[c[0]], c[:-1]])
    wick = np.abs(rng.normal(0, 0.001, (2, n)))
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "open": o,
            "high": np.maximum(o, c) * (1 + wick[0]),
            "low": np.minimum(o, c) * (1 - wick[1]),
            "close": c,
            "volume": rng.integers(0, 1000, n).astype(float),
        }
    )


def test_values_match_pandas_definitions() -> None:
    bars = _bars()
    got = single_features(bars)
    c, h, lo = bars["close"], bars["high"], bars["low"]
    lc = np.log(c)
    ref = {
        "ret_5": lc - lc.shift(5),
        "zscore_20": (c - c.rolling(20).mean()) / c.rolling(20).std(),
        "sma_gap_50": (c - c.rolling(50).mean()) / c,
        "ema_gap_20": (c - c.ewm(span=20, adjust=False).mean()) / c,
        "hv_60": lc.diff().rolling(60).std(),
        "bb_width": 4 * c.rolling(20).std() / c.rolling(20).mean(),
    }
    macd = (c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()) / c
    ref["macd"] = macd
    ref["macd_signal"] = macd.ewm(span=9, adjust=False).mean()
    d = c.diff()
    g = d.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    los = (-d).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    ref["rsi_14"] = 100 - 100 / (1 + g / los)
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    tr.iloc[0] = h.iloc[0] - lo.iloc[0]
    ref["atr_14"] = tr.rolling(14).mean() / c
    ll, hh = lo.rolling(14).min(), h.rolling(14).max()
    ref["stoch_k_14"] = 100 * (c - ll) / (hh - ll)
    for name, expect in ref.items():
        np.testing.assert_allclose(got[name], expect, rtol=1e-9, atol=1e-12, err_msg=name)


def test_streaming_equals_batch_with_restarts() -> None:
    bars = _bars(4_000, seed=2)
    batch = single_features(bars)[list(SINGLE_FEATURES)].to_numpy()
    ts = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
    vals = bars[["open", "high", "low", "close", "volume"]].to_numpy()
    engine = SingleFeatureEngine()
    rows = []
    for i in range(len(bars)):
        if i and i % 997 == 0:
            engine = SingleFeatureEngine.load(engine.save())
        rows.append(engine.update(int(ts[i]), tuple(vals[i])))
    np.testing.assert_array_equal(np.array(rows), batch)


@given(t=st.integers(0, 1_499), seed=st.integers(0, 1_000))
def test_no_look_ahead(t: int, seed: int) -> None:
    bars = _bars(1_500, seed=4)
    base = single_features(bars).drop(columns="ts").to_numpy()
    changed = bars.copy()
    rng = np.random.default_rng(seed)
    k = rng.uniform(0.9, 1.1, len(bars) - t - 1)
    for col in ("open", "high", "low", "close"):
        changed.loc[t + 1 :, col] *= k
    changed.loc[t + 1 :, "volume"] = rng.integers(0, 50, len(bars) - t - 1)
    after = single_features(changed).drop(columns="ts").to_numpy()
    np.testing.assert_array_equal(base[: t + 1], after[: t + 1])


def test_defined_after_warm_up_on_a_real_file() -> None:
    bars = FileProvider(third_party_csv("EURUSD.csv")).read("1h").bars
    feats = single_features(bars)
    assert np.isfinite(feats.drop(columns="ts").to_numpy()[100:]).all()
    assert set(feats["session_flag"].dropna()) <= {0.0, 1.0, 2.0, 3.0}
    assert set(feats["vol_bucket"].dropna()) <= {0.0, 1.0, 2.0}


def test_bad_bars_are_refused() -> None:
    bars = _bars(100)
    bars.loc[7, "low"] = -1.0
    with pytest.raises(ValueError, match="1 bar"):
        single_features(bars)
    with pytest.raises(ValueError, match="missing column"):
        single_features(bars.drop(columns="volume"))


def test_levels_follow_the_feature_order_file(cfg: AppConfig) -> None:
    levels = feature_levels(cfg.feature_order.single)
    assert len(levels[3]) == 28
    assert levels[2][: len(levels[3])] == levels[3]
    assert levels[2][len(levels[3]) :] == (
        "sig_ema_cross", "sig_macd", "sig_bb_revert", "sig_donchian_break", "sig_rsi"
    )  # fmt: skip
    assert len(levels[1]) == 41
    assert all(n.startswith("ext_") for n in levels[1][33:])
    assert set(levels[2]) == set(SINGLE_FEATURES)


def test_feature_order_errors(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    path = root / "base" / "feature_order.yaml"
    path.write_text(path.read_text().replace("sig_rsi]", "sig_rsi, ret_1]"))
    with pytest.raises(ConfigError, match=r"features listed twice: \['ret_1'\]"):
        load_config(root, "dev")
    path.write_text(path.read_text().replace("sig_rsi, ret_1]", "sig_rsii]"))
    with pytest.raises(ConfigError) as exc:
        feature_levels(load_config(root, "dev").feature_order.single)
    assert "['sig_rsii'] are not computed features" in exc.value.message


def test_flat_or_zero_range_bars_do_not_crash() -> None:
    bars = _bars(300)
    bars.loc[1, ["open", "high", "low", "close"]] = bars.loc[0, "close"]  # no trade in bar 1
    flat = bars.copy()
    flat[["open", "high", "low", "close"]] = 1.2345
    flat["volume"] = 0.0
    for frame in (bars, flat):
        out = single_features(frame).drop(columns="ts").to_numpy()
        assert not np.isinf(out).any()
    assert np.isnan(single_features(flat)["rsi_14"]).all()
    with pytest.raises(ValueError, match="unique and increasing"):
        single_features(pd.concat([bars, bars.iloc[[5]]]))
