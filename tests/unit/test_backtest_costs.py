"""Cost rates from cost_table.yaml and the time-of-day slippage factors, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.config import load_config
from mlcore.execution import LegCosts, leg_costs, slippage_factors
from tests.conftest import CONFIG_ROOT


def test_leg_costs_by_hand() -> None:
    costs = load_config(CONFIG_ROOT, "dev").costs
    # XAU/USD: commission 0.5 (default), slippage 1.0, spread 2.0, swap 0.6 a day; hourly bars.
    rates = leg_costs(costs, "XAU/USD", 3600)
    assert rates.fixed == pytest.approx((0.5 + 1.0) * 1e-4, rel=1e-15)
    assert rates.slippage == pytest.approx(1.0e-4, rel=1e-15)
    assert rates.swap_per_bar == pytest.approx(0.6e-4 / 24, rel=1e-15)
    double = leg_costs(costs, "XAU/USD", 3600, multiplier=2.0)
    assert double == rates.scaled(2.0)
    assert double.fixed == pytest.approx(2 * rates.fixed, rel=1e-15)
    assert double.slippage == pytest.approx(2 * rates.slippage, rel=1e-15)
    assert double.swap_per_bar == pytest.approx(2 * rates.swap_per_bar, rel=1e-15)
    assert leg_costs(costs, "XAU/USD", 3600, multiplier=0.0) == LegCosts()
    with pytest.raises(ValueError, match="multiplier must be finite and >= 0"):
        leg_costs(costs, "XAU/USD", 3600, multiplier=-1)


def test_fill_rate_per_bar_by_hand() -> None:
    costs = load_config(CONFIG_ROOT, "dev").costs
    ts = (
        pd.DatetimeIndex(
            ["2024-03-04 03:00", "2024-03-04 12:00", "2024-03-04 21:00", "2024-03-04 23:59"],
            tz="UTC",
        )
        .as_unit("ns")
        .asi8
    )
    factors = [1.5, 1.0, 2.0, 2.0]  # Asian morning, normal, New York close (to midnight)
    assert slippage_factors(costs, ts).tolist() == factors
    # What a fill pays per unit of notional on each bar: commission + slippage x factor + half
    # the spread.
    r = leg_costs(costs, "XAU/USD", 3600)
    want = [(0.5 + 1.0 * f + 1.0) * 1e-4 for f in factors]
    np.testing.assert_allclose(r.fixed + r.slippage * slippage_factors(costs, ts), want, rtol=1e-15)


def test_windows_follow_the_configured_timezone() -> None:
    cfg = load_config(CONFIG_ROOT, "dev")
    tod = cfg.costs.slippage_time_of_day.model_copy(update={"timezone": "Asia/Tokyo"})
    costs = cfg.costs.model_copy(update={"slippage_time_of_day": tod})
    # 20:00 UTC is 05:00 in Tokyo: inside the 00:00-06:00 window there.
    ts = pd.DatetimeIndex(["2024-03-04 20:00"], tz="UTC").as_unit("ns").asi8
    assert slippage_factors(costs, ts).tolist() == [1.5]
