"""Per-bar cost rates of one instrument from ``cost_table.yaml``: what a fill pays and what a
bar of holding pays, as fractions of notional. The live path charges from the same table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlcore.config import CostTable

_BPS = 1e-4
_SECONDS_PER_DAY = 86_400.0


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def slippage_factors(costs: CostTable, ts_ns: ArrayLike) -> np.ndarray:
    """The time-of-day slippage factor of each bar (1.0 outside every window)."""
    tod = costs.slippage_time_of_day
    local = pd.DatetimeIndex(np.asarray(ts_ns, dtype="datetime64[ns]"), tz="UTC").tz_convert(
        tod.timezone
    )
    minute = np.asarray(local.hour * 60 + local.minute)
    factor = np.ones(len(minute))
    for w in tod.windows:
        inside = (minute >= _minutes(w.start)) & (minute < _minutes(w.end))
        factor[inside] = w.factor
    return factor


def cost_arrays(
    costs: CostTable, symbol: str, ts_ns: ArrayLike, bar_seconds: int, multiplier: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(fill, carry) per bar: a fill pays commission + slippage x time-of-day factor + half the
    spread; holding over a bar pays the daily swap pro rata. ``multiplier`` scales both (the
    cost-increase stress scenario)."""
    if multiplier < 0:
        raise ValueError(f"cost multiplier must be >= 0, got {multiplier}")
    r = costs.rates(symbol)
    factor = slippage_factors(costs, ts_ns)
    fill = (r.commission_bps + r.slippage_bps * factor + 0.5 * r.spread_bps) * _BPS * multiplier
    carry = np.full(len(fill), r.swap_bps_per_day * _BPS * bar_seconds / _SECONDS_PER_DAY)
    return fill, carry * multiplier
