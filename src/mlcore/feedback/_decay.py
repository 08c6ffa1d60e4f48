"""Decay detectors (pure): the live-vs-backtest win-rate gap with a Wilson bound and its power,
the risk-gate pass rate outside its band for k windows in a row, and risk_flag runs.

The win-rate gap's bound treats the backtest win rate as fixed: the backtest is the reference
the spec compares live trading with (its test window holds many more trades than a live
window), so all the uncertainty is the live rate's. gap_low = p_backtest − (upper Wilson bound
of the live rate); it fires when gap_low > win_gap_points / 100. With the backtest's trade
count given, :func:`newcombe_interval` (Newcombe 1998, method 10: the hybrid Wilson score
interval of a difference) also counts the backtest's own sampling error."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.stats import binom, norm


class Verdict(StrEnum):
    """A detector's outcome."""

    FIRED = "fired"
    QUIET = "quiet"
    INCONCLUSIVE = "inconclusive"


def wilson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """The two-sided Wilson score interval of a proportion (``trials`` > 0)."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"no Wilson interval for {successes} of {trials}")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    wins1: int, n1: int, wins2: int, n2: int, confidence: float
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 − p2 (two independent proportions), inside
    [-1, 1] (rounding put a bound at -1.0000000000000002: hypothesis, 0 of 1 against 27 of 27)."""
    p1, p2 = wins1 / n1, wins2 / n2
    l1, u1 = wilson_interval(wins1, n1, confidence)
    l2, u2 = wilson_interval(wins2, n2, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True)
class WinGap:
    """The live-vs-backtest win-rate check."""

    verdict: Verdict
    live_trades: int
    live_win_rate: float | None
    backtest_win_rate: float
    gap_low_points: float | None
    threshold_points: float
    reason: str


def win_rate_gap(
    live_wins: int, live_trades: int, backtest_win_rate: float, threshold_points: float,
    confidence: float,
) -> WinGap:  # fmt: skip
    """Fires when backtest_win_rate − (upper Wilson bound of the live rate) exceeds
    ``threshold_points`` / 100; inconclusive without live trades."""
    if not 0 <= backtest_win_rate <= 1 or not math.isfinite(backtest_win_rate):
        raise ValueError(f"backtest win rate {backtest_win_rate} is not in [0, 1]")
    if live_trades <= 0:
        return WinGap(Verdict.INCONCLUSIVE, 0, None, backtest_win_rate, None, threshold_points,
                      "no live trades yet")  # fmt: skip
    _, upper = wilson_interval(live_wins, live_trades, confidence)
    gap_low = 100 * (backtest_win_rate - upper)
    rate = live_wins / live_trades
    fired = gap_low > threshold_points
    reason = (
        f"live win rate {rate:.3f} over {live_trades} trades vs backtest {backtest_win_rate:.3f}: "
        f"gap lower bound {gap_low:.1f} points ({confidence:.0%} Wilson) "
        f"{'>' if fired else '<='} {threshold_points:g}"
    )
    return WinGap(Verdict.FIRED if fired else Verdict.QUIET, live_trades, rate,
                  backtest_win_rate, gap_low, threshold_points, reason)  # fmt: skip


def gap_power(
    trades: int, backtest_win_rate: float, true_gap_points: float, threshold_points: float,
    confidence: float,
) -> float:  # fmt: skip
    """The chance that :func:`win_rate_gap` fires with ``trades`` live trades when the live
    win rate truly is backtest − true_gap (exact, by the binomial law)."""
    p_live = backtest_win_rate - true_gap_points / 100
    if not 0 <= p_live <= 1:
        raise ValueError(f"true gap {true_gap_points} points leaves no win rate in [0, 1]")
    k = np.arange(trades + 1)
    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / trades
    denom = 1 + z * z / trades
    upper = (
        p + z * z / (2 * trades) + z * np.sqrt(p * (1 - p) / trades + z * z / (4 * trades * trades))
    ) / denom
    fires = k[100 * (backtest_win_rate - np.minimum(upper, 1.0)) > threshold_points]
    return float(binom.cdf(fires.max(), trades, p_live)) if fires.size else 0.0


def trades_for_power(
    backtest_win_rate: float, true_gap_points: float, threshold_points: float,
    confidence: float, power: float, max_trades: int = 20_000,
) -> int | None:  # fmt: skip
    """The fewest live trades from which on the win-rate check has at least ``power``
    (checked for 20 more trade counts, as discreteness makes power saw-toothed); None when
    even ``max_trades`` is not enough (a true gap at or below the threshold)."""
    lo, hi = 1, max_trades
    if gap_power(hi, backtest_win_rate, true_gap_points, threshold_points, confidence) < power:
        return None
    while lo < hi:  # power grows with trades apart from saw teeth: bisect, then walk
        mid = (lo + hi) // 2
        ok = gap_power(mid, backtest_win_rate, true_gap_points, threshold_points, confidence)
        lo, hi = (lo, mid) if ok >= power else (mid + 1, hi)
    n = lo
    while not all(
        gap_power(m, backtest_win_rate, true_gap_points, threshold_points, confidence) >= power
        for m in range(n, min(n + 20, max_trades) + 1)
    ):
        n += 1
    return n


@dataclass(frozen=True)
class RunCheck:
    """A consecutive-window detector's outcome."""

    verdict: Verdict
    run: int
    needed: int
    reason: str


def pass_rate_windows(
    risk_scores: Sequence[float], theta2: Sequence[float], window: int
) -> list[float]:
    """The risk gate's pass rate (share of signals with risk_score < θ2) in consecutive
    windows of ``window`` signals, oldest first (a last partial window is left out)."""
    r, t = np.asarray(risk_scores, dtype=float), np.asarray(theta2, dtype=float)
    passed = r < t
    full = len(passed) // window
    return [float(passed[i * window : (i + 1) * window].mean()) for i in range(full)]


def pass_rate_breach(rates: Sequence[float], band: tuple[float, float], k: int) -> RunCheck:
    """Fires when the newest ``k`` window pass rates are all outside ``band``."""
    if len(rates) < k:
        return RunCheck(Verdict.INCONCLUSIVE, 0, k, f"{len(rates)} full windows, {k} needed")
    run = 0
    for rate in reversed(rates):
        if band[0] <= rate <= band[1]:
            break
        run += 1
    fired = run >= k
    shown = ", ".join(f"{x:.3f}" for x in rates[-k:])
    return RunCheck(Verdict.FIRED if fired else Verdict.QUIET, run, k,
                    f"pass rate of the last {k} windows [{shown}] vs band "
                    f"[{band[0]:g}, {band[1]:g}]: {run} outside in a row")  # fmt: skip


def risk_flag_run(flags: Sequence[bool], k: int) -> RunCheck:
    """Fires when the newest ``k`` bars are all risk-flagged (the trailing run ≥ ``k``)."""
    run = 0
    for flag in reversed(flags):
        if not flag:
            break
        run += 1
    fired = run >= k
    return RunCheck(Verdict.FIRED if fired else Verdict.QUIET, run, k,
                    f"{run} risk-flagged bars in a row (fires at {k})")  # fmt: skip
