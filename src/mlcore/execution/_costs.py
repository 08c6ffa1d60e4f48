"""Cost rates of one instrument from ``cost_table.yaml``: what a fill pays and what a bar of
holding pays, as fractions of notional. The live path charges from the same table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlcore.config import CostTable

_BPS = 1e-4
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class LegCosts:
    """One leg's costs as fractions of notional. A fill of ``units`` at ``price`` on bar t pays
    ``|units| * price * (fixed + slippage * factor[t])``, with ``factor`` the bar's time-of-day
    slippage factor; holding over a bar pays ``swap_per_bar`` of the notional held."""

    fixed: float = 0.0  # commission + half the spread, per fill
    slippage: float = 0.0  # per fill, times the bar's time-of-day factor
    swap_per_bar: float = 0.0  # per bar held

    def scaled(self, multiplier: float) -> LegCosts:
        """All three rates times ``multiplier`` (the cost-increase stress scenario)."""
        if not (math.isfinite(multiplier) and multiplier >= 0):
            raise ValueError(f"cost multiplier must be finite and >= 0, got {multiplier}")
        return LegCosts(
            self.fixed * multiplier, self.slippage * multiplier, self.swap_per_bar * multiplier
        )


ZERO_COSTS = LegCosts()


def leg_costs(costs: CostTable, symbol: str, bar_seconds: int, multiplier: float = 1.0) -> LegCosts:
    """The symbol's rates: commission + half the spread per fill, slippage per fill (before the
    time-of-day factor) and the daily swap pro rata per bar; ``multiplier`` scales all three."""
    r = costs.rates(symbol)
    return LegCosts(
        fixed=(r.commission_bps + 0.5 * r.spread_bps) * _BPS,
        slippage=r.slippage_bps * _BPS,
        swap_per_bar=r.swap_bps_per_day * _BPS * bar_seconds / _SECONDS_PER_DAY,
    ).scaled(multiplier)


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


def slippage_factor_at(costs: CostTable, ts_ns: int) -> float:
    """:func:`slippage_factors` of one timestamp, without NumPy or pandas (the live path)."""
    tod = costs.slippage_time_of_day
    local = datetime.fromtimestamp(ts_ns // 1_000_000_000, ZoneInfo(tod.timezone))
    minute = local.hour * 60 + local.minute
    factor = 1.0
    for w in tod.windows:  # a later window wins, as in slippage_factors
        if _minutes(w.start) <= minute < _minutes(w.end):
            factor = w.factor
    return factor
