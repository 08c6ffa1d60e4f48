"""Live KPIs as pure functions of arrays: the backtest's definitions (``backtest/_metrics.py``)
applied to realized P&L, the risk gates' pass rates from the served signals, and risk_flag
against the realized risk label.

- Equity: ``capital`` plus the cumulative realized P&L of the trades closed so far (exits
  only; an open position is not marked to market). Daily returns: the last equity of each UTC
  day that has bars (served signals) against the day before, the first against ``capital``.
- Sharpe: ``mean(r) * sqrt(ppy) / std(r, ddof=1)``, ``ppy = days / years`` and
  ``years = max(span, 1 day) / 365.25`` (the backtest portfolio's annualisation).
- MaxDD: the largest fall from a running peak that starts at ``capital``, as a fraction.
- Win rate, expectancy: share of closed trades with P&L > 0, mean P&L (USD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

_DAY_NS = 86_400 * 10**9
_YEAR_DAYS = 365.25


def years_spanned(first_ns: int, last_ns: int) -> float:
    """The span of the bars in years, at least one day (the backtest's rule)."""
    return max((last_ns - first_ns) / _DAY_NS, 1.0) / _YEAR_DAYS


def daily_equity(bar_ts_ns: ArrayLike, exit_ts_ns: ArrayLike, pnl_usd: ArrayLike,
                 capital: float) -> np.ndarray:  # fmt: skip
    """Equity at the end of each UTC day that has bars: capital plus the P&L realized by then
    (a trade closed on a day without bars counts on the next day with bars)."""
    days = np.unique(np.asarray(bar_ts_ns, dtype=np.int64) // _DAY_NS)
    exits = np.asarray(exit_ts_ns, dtype=np.int64) // _DAY_NS
    pnl = np.asarray(pnl_usd, dtype=np.float64)
    order = np.argsort(exits, kind="stable")
    cum = np.r_[0.0, np.cumsum(pnl[order])]
    # P&L of exits up to each day's end; exits after the last bar day are left out.
    upto = np.searchsorted(exits[order], days, side="right")
    out: np.ndarray = capital + cum[upto]
    return out


def daily_returns(equity: ArrayLike, capital: float) -> np.ndarray:
    """Day-on-day returns, the first day against ``capital``."""
    values = np.asarray(equity, dtype=np.float64)
    out: np.ndarray = values / np.r_[capital, values[:-1]] - 1.0
    return out


def sharpe_ratio(returns: ArrayLike, periods_per_year: float) -> float | None:
    """Annualised Sharpe (sample std); None with fewer than 2 returns or none varying."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return None
    std = float(np.std(r, ddof=1))
    mean = float(np.mean(r))
    return mean * math.sqrt(periods_per_year) / std if std > 0 and math.isfinite(mean) else None


def max_drawdown(equity: ArrayLike, capital: float) -> float:
    """Largest fall from a running peak (starting at ``capital``), a positive fraction."""
    path = np.r_[capital, np.asarray(equity, dtype=np.float64)]
    peak = np.maximum.accumulate(path)
    return max(0.0, float(-np.min(path / peak - 1.0)))


@dataclass(frozen=True)
class TradeStats:
    """The P&L side of the KPIs over one window."""

    n_trades: int  # closed trades (exits with a known entry)
    n_bars: int
    pnl_usd: float
    win_rate: float | None
    expectancy_usd: float | None
    sharpe: float | None
    max_drawdown: float | None
    trades_per_year: float | None


def trade_stats(bar_ts_ns: ArrayLike, exit_ts_ns: ArrayLike, pnl_usd: ArrayLike,
                capital: float) -> TradeStats:  # fmt: skip
    """:class:`TradeStats` of the closed trades and the bars of one window."""
    bars = np.asarray(bar_ts_ns, dtype=np.int64)
    pnl = np.asarray(pnl_usd, dtype=np.float64)
    n = len(pnl)
    if len(bars) == 0:
        return TradeStats(0, 0, float(pnl.sum()), None, None, None, None, None)
    years = years_spanned(int(bars.min()), int(bars.max()))
    equity = daily_equity(bars, exit_ts_ns, pnl, capital)
    returns = daily_returns(equity, capital)
    return TradeStats(
        n_trades=n, n_bars=len(bars), pnl_usd=float(pnl.sum()),
        win_rate=float(np.mean(pnl > 0)) if n else None,
        expectancy_usd=float(np.mean(pnl)) if n else None,
        sharpe=sharpe_ratio(returns, len(returns) / years),
        max_drawdown=max_drawdown(equity, capital), trades_per_year=n / years,
    )  # fmt: skip


@dataclass(frozen=True)
class GateRates:
    """The risk gates on the candidate entries of one window (flat bars where AI1 was asked
    and ``|z| >= entry_z``)."""

    candidates: int
    theta1_pass_rate: float | None  # return_prob > θ1, of the candidates
    theta2_pass_rate: float | None  # risk_score < θ2, of those passing θ1
    ai2_refusal_rate: float | None  # risk_score >= θ2, of those passing θ1 (やらない勇気)


def gate_rates(return_prob: ArrayLike, risk_score: ArrayLike, theta1: ArrayLike,
               theta2: ArrayLike) -> GateRates:  # fmt: skip
    """:class:`GateRates` of the candidate entries' scores and the θ each was served with."""
    prob, risk = np.asarray(return_prob, dtype=np.float64), np.asarray(risk_score, np.float64)
    passed1 = prob > np.asarray(theta1, dtype=np.float64)
    refused2 = risk[passed1] >= np.asarray(theta2, dtype=np.float64)[passed1]
    n, n1 = len(prob), int(passed1.sum())
    return GateRates(
        candidates=n, theta1_pass_rate=n1 / n if n else None,
        theta2_pass_rate=float(np.mean(~refused2)) if n1 else None,
        ai2_refusal_rate=float(np.mean(refused2)) if n1 else None,
    )  # fmt: skip


def adverse_spread_move(side: int, beta: float, entry_prices: tuple[float, float],
                        exit_prices: tuple[float, float]) -> float:  # fmt: skip
    """How far the log spread ``ln(A) - β ln(B)`` moved against a position of ``side``
    between its entry and exit fills (> 0: against it)."""
    before = math.log(entry_prices[0]) - beta * math.log(entry_prices[1])
    after = math.log(exit_prices[0]) - beta * math.log(exit_prices[1])
    return -side * (after - before)


@dataclass(frozen=True)
class FlagQuality:
    """risk_flag against the realized risk label over closed trades."""

    trades: int
    adverse: int
    flagged: int
    precision: float | None  # adverse among flagged
    recall: float | None  # flagged among adverse


def flag_quality(flagged: ArrayLike, adverse: ArrayLike) -> FlagQuality:
    """Precision and recall of ``flagged`` for ``adverse`` (None when undefined)."""
    f, a = np.asarray(flagged, dtype=bool), np.asarray(adverse, dtype=bool)
    hits = int((f & a).sum())
    return FlagQuality(
        trades=len(f), adverse=int(a.sum()), flagged=int(f.sum()),
        precision=hits / int(f.sum()) if f.any() else None,
        recall=hits / int(a.sum()) if a.any() else None,
    )  # fmt: skip


def quantile(values: ArrayLike, q: float) -> float | None:
    """The ``q`` quantile (linear), None of nothing."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.quantile(v, q)) if len(v) else None
