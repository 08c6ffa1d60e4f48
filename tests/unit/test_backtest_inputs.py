"""FX conversion with the stale guard, windows of a pair's bars, and the stress transforms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.backtest import PairBars, fx_rate
from mlcore.backtest._stress import atr_noise, correlation_breakdown, gap_events

H = 3_600 * 10**9


def _fx(ts_hours: list[int], close: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.to_datetime(np.asarray(ts_hours) * H, utc=True), "close": close})


def test_fx_direct_inverse_and_stale_by_hand() -> None:
    bars = np.arange(6) * H
    fx = _fx([0, 1, 2], [1.25, 1.30, 1.20])  # GBP/USD stops after hour 2
    rate, stale = fx_rate("GBP", "USD", bars, lambda s: fx, {"GBP/USD"}, stale_seconds=3_600)
    # Hours 0..3 see a close at most 1 h old; 4 and 5 are stale and keep the last fresh rate.
    np.testing.assert_array_equal(rate, [1.25, 1.30, 1.20, 1.20, 1.20, 1.20])
    np.testing.assert_array_equal(stale, [False, False, False, False, True, True])
    jpy = _fx([0, 1], [150.0, 160.0])  # USD/JPY: a JPY price is divided by it
    rate, stale = fx_rate("JPY", "USD", bars[:2], lambda s: jpy, {"USD/JPY"}, 3_600)
    np.testing.assert_allclose(rate, [1 / 150.0, 1 / 160.0], rtol=0, atol=0)
    assert not stale.any()


def test_fx_same_currency_is_one_and_missing_instrument_is_refused() -> None:
    rate, stale = fx_rate("USD", "USD", np.arange(3) * H, lambda s: pd.DataFrame(), set(), 60)
    assert (rate == 1.0).all() and not stale.any()
    with pytest.raises(ValueError, match=r"needs GBP/USD or USD/GBP"):
        fx_rate("GBP", "USD", np.arange(3) * H, lambda s: pd.DataFrame(), {"EUR/USD"}, 60)


def test_fx_before_any_rate_has_no_price() -> None:
    fx = _fx([2], [1.1])
    rate, stale = fx_rate("EUR", "USD", np.arange(4) * H, lambda s: fx, {"EUR/USD"}, 3_600)
    assert np.isnan(rate[:2]).all() and stale[:2].all()
    assert rate[2] == 1.1


def _bars(n: int = 200) -> PairBars:
    rng = np.random.default_rng(0)
    pa = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    pb = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    z = rng.normal(0, 1.5, n)
    return PairBars(
        pair_id="P", ts_ns=np.arange(n, dtype=np.int64) * H, price_a=pa, price_b=pb,
        beta=np.full(n, 1.2), z=z, prob=np.full(n, 0.9), risk=np.full(n, 0.1),
        scale=np.ones(n), atr_a=np.full(n, 1.0), atr_b=np.full(n, 0.5), slippage=np.ones(n),
        fx_blocked=np.r_[np.zeros(n - 10, bool), np.ones(10, bool)],
    )  # fmt: skip


def test_window_and_entry_prob() -> None:
    b = _bars()
    w = b.window(pd.Timestamp(10 * H, tz="UTC"), pd.Timestamp(20 * H, tz="UTC"))
    assert len(w.ts_ns) == 10 and w.ts_ns[0] == 10 * H
    assert np.isnan(b.entry_prob()[-10:]).all() and (b.entry_prob()[:-10] == 0.9).all()


def test_stress_transforms_change_only_what_they_claim() -> None:
    b = _bars()
    rng = np.random.default_rng(1)
    noisy = atr_noise(b, 0.5, rng)
    assert (noisy.price_a > 0).all() and not np.array_equal(noisy.price_a, b.price_a)
    assert np.std(noisy.price_a - b.price_a) == pytest.approx(0.5, rel=0.2)
    np.testing.assert_array_equal(noisy.z, b.z)
    broken = correlation_breakdown(b, 0.5, np.random.default_rng(2))
    np.testing.assert_array_equal(broken.price_b[:100], b.price_b[:100])
    # Same returns, another order: the end price is unchanged, the path is not.
    assert broken.price_b[-1] == pytest.approx(b.price_b[-1], rel=1e-9)
    assert not np.allclose(broken.price_b[100:], b.price_b[100:])
    np.testing.assert_array_equal(broken.price_a, b.price_a)
    gapped = gap_events(b, 3, 6.0, np.random.default_rng(3))
    jumps = np.flatnonzero(np.abs(np.diff(gapped.price_a - b.price_a)) > 1e-9)
    assert len(jumps) == 3
    np.testing.assert_allclose(np.abs(np.diff(gapped.price_a - b.price_a))[jumps], 6.0)
