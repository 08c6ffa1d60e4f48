"""Cost rates per bar from cost_table.yaml, computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.backtest import cost_arrays, slippage_factors
from mlcore.config import load_config
from tests.conftest import CONFIG_ROOT


def test_fill_and_carry_by_hand() -> None:
    costs = load_config(CONFIG_ROOT, "dev").costs
    ts = (
        pd.DatetimeIndex(
            ["2024-03-04 03:00", "2024-03-04 12:00", "2024-03-04 21:00", "2024-03-04 23:59"],
            tz="UTC",
        )
        .as_unit("ns")
        .asi8
    )
    # XAU/USD: commission 0.5 (default), slippage 1.0, spread 2.0, swap 0.6 a day.
    fill, carry = cost_arrays(costs, "XAU/USD", ts, 3600)
    factors = [1.5, 1.0, 2.0, 2.0]  # Asian morning, normal, New York close (to midnight)
    want = [(0.5 + 1.0 * f + 1.0) * 1e-4 for f in factors]
    np.testing.assert_allclose(fill, want, rtol=1e-15)
    np.testing.assert_allclose(carry, 0.6e-4 / 24, rtol=1e-15)
    double, double_carry = cost_arrays(costs, "XAU/USD", ts, 3600, multiplier=2.0)
    np.testing.assert_allclose(double, 2 * fill, rtol=1e-15)
    np.testing.assert_allclose(double_carry, 2 * carry, rtol=1e-15)
    assert slippage_factors(costs, ts).tolist() == factors
    with pytest.raises(ValueError, match="multiplier must be >= 0"):
        cost_arrays(costs, "XAU/USD", ts, 3600, multiplier=-1)


def test_windows_follow_the_configured_timezone() -> None:
    cfg = load_config(CONFIG_ROOT, "dev")
    tod = cfg.costs.slippage_time_of_day.model_copy(update={"timezone": "Asia/Tokyo"})
    costs = cfg.costs.model_copy(update={"slippage_time_of_day": tod})
    # 20:00 UTC is 05:00 in Tokyo: inside the 00:00-06:00 window there.
    ts = pd.DatetimeIndex(["2024-03-04 20:00"], tz="UTC").as_unit("ns").asi8
    assert slippage_factors(costs, ts).tolist() == [1.5]
