"""Every data-quality rule on hand-built series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.config import AppConfig, DQThresholds
from mlcore.data import classify_moves, expected_grid, run_dq

START = pd.Timestamp("2024-03-01", tz="UTC")


def _th(cfg: AppConfig) -> DQThresholds:
    return cfg.pipeline.dq_thresholds


def _series(n: int, seed: int = 0, sigma: float = 0.002) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, sigma, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "ts": pd.date_range(START, periods=n, freq="h"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.0005,
            "low": np.minimum(open_, close) * 0.9995,
            "close": close,
            "volume": 10.0,
            "conflict": False,
        }
    )


def _run(cfg: AppConfig, raw: pd.DataFrame):  # type: ignore[no-untyped-def]
    grid = expected_grid(
        cfg.universe.calendars["crypto"], "1h", raw["ts"].iloc[0], raw["ts"].iloc[-1]
    )
    return run_dq(raw, grid, _th(cfg))


@pytest.mark.parametrize("n_missing", [1, 2])
def test_short_gaps_are_filled_by_interpolation(cfg: AppConfig, n_missing: int) -> None:
    raw = _series(300)
    drop = list(range(150, 150 + n_missing))
    before, after = raw["close"].iloc[149], raw["close"].iloc[150 + n_missing]
    res = _run(cfg, raw.drop(index=drop).reset_index(drop=True))
    filled = res.bars[res.bars["quality_flag"] == "filled"]
    assert list(filled["ts"]) == list(raw["ts"].iloc[drop])
    expect = before + (after - before) * np.arange(1, n_missing + 1) / (n_missing + 1)
    np.testing.assert_allclose(filled["close"], expect, rtol=1e-12)
    assert filled["open"].iloc[0] == pytest.approx(before)  # forward fill from last close
    assert (filled["high"] >= filled[["open", "close"]].max(axis=1)).all()
    assert (filled["volume"] == 0).all()
    assert len(res.bars) == 300
    assert [g.filled for g in res.gaps] == [True]


def test_gap_longer_than_max_fill_is_left_and_reported(cfg: AppConfig) -> None:
    raw = _series(300)
    res = _run(cfg, raw.drop(index=range(100, 103)).reset_index(drop=True))
    assert len(res.bars) == 297
    assert (res.bars["quality_flag"] != "filled").all()
    [gap] = res.gaps
    assert (gap.n_bars, gap.filled) == (3, False)
    assert gap.start == raw["ts"].iloc[100]
    assert gap.end == raw["ts"].iloc[102]
    assert len(res.missing_ts) == 3


def test_bad_print_is_excluded_and_repaired(cfg: AppConfig) -> None:
    raw = _series(600)
    orig = raw.loc[400].copy()
    raw.loc[400, ["close", "high"]] = orig["close"] * 1.1  # one bar 10% off, then back
    raw.loc[401, "open"] = raw.loc[400, "close"]
    raw.loc[401, "high"] = max(raw.loc[401, "high"], raw.loc[400, "close"])
    res = _run(cfg, raw)
    flags = res.bars["quality_flag"]
    assert flags.iloc[400] == "outlier"
    assert (flags.drop(index=400) == "ok").all()
    # The original bad values are kept aside, the bar itself interpolated between neighbours.
    assert res.excluded["close"].iloc[0] == pytest.approx(orig["close"] * 1.1)
    assert res.excluded["reason"].iloc[0] == "outlier"
    mid = (raw["close"].iloc[399] + raw["close"].iloc[401]) / 2
    assert res.bars["close"].iloc[400] == pytest.approx(mid)
    assert res.bars["low"].iloc[400] <= res.bars["close"].iloc[400] <= res.bars["high"].iloc[400]


def test_real_jump_is_kept_and_flagged_spike(cfg: AppConfig) -> None:
    raw = _series(600)
    for col in ("open", "high", "low", "close"):
        raw.loc[400:, col] *= 1.1
    raw.loc[400, "open"] /= 1.1
    raw.loc[400, "low"] = min(raw.loc[400, "low"], raw.loc[400, "open"])
    res = _run(cfg, raw)
    assert res.bars["quality_flag"].iloc[400] == "spike"
    assert res.bars["close"].iloc[400] == raw["close"].iloc[400]
    assert res.excluded.empty


def test_partial_retrace_below_ratio_is_a_spike(cfg: AppConfig) -> None:
    close = _series(600)["close"].to_numpy().copy()
    close[400:] *= 1.1
    close[401:] /= 1.1**0.5  # retraces half of the move: below the 75% rule
    outlier, spike = classify_moves(close, _th(cfg))
    assert spike[400] and not outlier[400]


def test_move_within_eight_sigma_is_not_flagged(cfg: AppConfig) -> None:
    close = _series(600, sigma=0.002)["close"].to_numpy().copy()
    close[400:] *= np.exp(0.002 * 5)  # 5 sigma
    outlier, spike = classify_moves(close, _th(cfg))
    assert not outlier[400] and not spike[400]


def test_two_bad_prints_in_a_row_are_both_outliers(cfg: AppConfig) -> None:
    close = _series(600)["close"].to_numpy().copy()
    close[300] *= 1.2
    close[301] = close[301] * 1.2
    outlier, spike = classify_moves(close, _th(cfg))
    assert outlier[300] and outlier[301]
    assert not outlier[302] and not spike[302]
    assert outlier.sum() == 2 and spike.sum() == 0


def test_bad_print_longer_than_max_fill_is_a_jump_pair(cfg: AppConfig) -> None:
    close = _series(600)["close"].to_numpy().copy()
    close[300:303] *= 1.2  # three bars off: more than max_fill_bars (2)
    outlier, spike = classify_moves(close, _th(cfg))
    assert not outlier.any()
    assert spike[300] and spike[303]


def test_no_sigma_before_min_bars(cfg: AppConfig) -> None:
    close = _series(600)["close"].to_numpy().copy()
    close[10] *= 1.5
    outlier, spike = classify_moves(close, _th(cfg))
    assert not outlier[10] and not spike[10]  # too little history to judge


def test_conflict_flag_carried(cfg: AppConfig) -> None:
    raw = _series(300)
    raw.loc[123, "conflict"] = True
    res = _run(cfg, raw)
    assert res.bars["quality_flag"].iloc[123] == "conflict"
    assert (res.bars["quality_flag"] == "conflict").sum() == 1


def test_weekend_is_not_a_gap_for_fx(cfg: AppConfig) -> None:
    cal = cfg.universe.calendars["fx"]
    grid = expected_grid(
        cal, "1h", pd.Timestamp("2024-03-04", tz="UTC"), pd.Timestamp("2024-03-15", tz="UTC")
    )
    raw = _series(len(grid))
    raw["ts"] = grid
    res = run_dq(raw, grid, _th(cfg))
    assert res.gaps == []
    assert len(res.off_calendar_ts) == 0


def test_real_move_unwinding_over_two_bars_is_not_a_bad_print(cfg: AppConfig) -> None:
    # Shape of GOOG on 2008-10-10..15: +14.8%, then -5%, then -6.7% (a real rally).
    close = _series(600)["close"].to_numpy().copy()
    base = close[299]
    close[300:] = close[300:] / close[300] * base * 381.02 / 332.0
    close[301:] = close[301:] / close[301] * base * 362.71 / 332.0
    close[302:] = close[302:] / close[302] * base * 339.17 / 332.0
    outlier, spike = classify_moves(close, _th(cfg))
    assert not outlier[298:305].any()
    assert spike[300]
