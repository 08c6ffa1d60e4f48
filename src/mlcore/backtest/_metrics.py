"""Performance of a backtest from its equity and trades: annual return, Sharpe, Sortino, MaxDD,
Calmar, win rate, trades per year, expectancy per trade and turnover.

Returns are daily (the last equity of each UTC day against the day before, the first day
against the starting capital); ``periods_per_year`` annualises them (252 is the usual equity
count; a 24/7 market has 365). The ratios use the conventions of empyrical (sample standard
deviation, downside deviation against 0 over all days, compound annual return), written here
independently and cross-checked against it in the tests. The maximum drawdown counts from the
starting capital, so a loss on the first day is a drawdown too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def daily_equity(ts_ns: ArrayLike, equity: ArrayLike) -> pd.Series:
    """The last equity of each UTC calendar day that has bars."""
    index = pd.DatetimeIndex(np.asarray(ts_ns, dtype="datetime64[ns]"), tz="UTC")
    series = pd.Series(np.asarray(equity, dtype=np.float64), index=index)
    return series.groupby(index.normalize()).last()


def daily_returns(daily: pd.Series, capital: float) -> np.ndarray:
    """Day-on-day returns, the first day against ``capital``."""
    values = daily.to_numpy(dtype=np.float64)
    previous = np.r_[capital, values[:-1]]
    out: np.ndarray = values / previous - 1.0
    return out


def max_drawdown(equity: ArrayLike, capital: float) -> float:
    """Largest fall from a running peak (starting at ``capital``), as a positive fraction."""
    path = np.r_[capital, np.asarray(equity, dtype=np.float64)]
    peak = np.maximum.accumulate(path)
    return max(0.0, float(-np.min(path / peak - 1.0)))  # never -0.0


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 and math.isfinite(num) else None


def performance(
    returns: ArrayLike, capital: float, trades: pd.DataFrame, years: float,
    periods_per_year: float, traded_notional: float,
) -> dict[str, Any]:  # fmt: skip
    """The summary metrics (None where undefined, such as Sharpe of a flat line)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2:
        raise ValueError(f"need at least 2 daily returns, got {r.shape}")
    if years <= 0:
        raise ValueError(f"years must be > 0, got {years}")
    growth = float(np.prod(1.0 + r))
    annual = growth ** (periods_per_year / len(r)) - 1.0 if growth > 0 else -1.0
    std = float(np.std(r, ddof=1))
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) * math.sqrt(periods_per_year)
    mdd = max_drawdown(capital * np.cumprod(1.0 + r), capital)
    pnl = trades["pnl"].to_numpy(dtype=np.float64) if len(trades) else np.zeros(0)
    return {
        "days": len(r),
        "annual_return": annual,
        "sharpe": _ratio(float(np.mean(r)) * math.sqrt(periods_per_year), std),
        "sortino": _ratio(float(np.mean(r)) * periods_per_year, downside),
        "max_drawdown": mdd,
        "calmar": _ratio(annual, mdd),
        "trades": len(pnl),
        "trades_per_year": len(pnl) / years,
        "win_rate": float(np.mean(pnl > 0)) if len(pnl) else None,
        "expectancy_per_trade": float(np.mean(pnl)) if len(pnl) else None,
        "expectancy_per_trade_of_capital": float(np.mean(pnl)) / capital if len(pnl) else None,
        "turnover_per_year": traded_notional / capital / years,
        "turnover_kind": "two-way: entries and exits of both legs, as multiples of capital",
        "periods_per_year": periods_per_year,
    }
