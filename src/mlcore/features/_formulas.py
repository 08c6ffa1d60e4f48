"""The pair-feature formulas, once, as compiled scalar functions.

Both engines call these: the batch engine on window sums of whole arrays, the streaming engine
on the sums its rings keep. A formula is NaN whenever an input is (the warm-up).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def cov(sx: float, sy: float, sxy: float, n: int) -> float:
    """Sample covariance (ddof=1) from window sums."""
    return (sxy - sx * sy / n) / (n - 1)


@nb.njit(cache=True, inline="always")
def std(sx: float, sxx: float, n: int) -> float:
    """Sample standard deviation (ddof=1) from window sums; NaN when not positive."""
    v = cov(sx, sx, sxx, n)
    return math.sqrt(v) if v > 0 else np.nan


@nb.njit(cache=True, inline="always")
def ols(
    x: float, y: float, sx: float, sy: float, sxx: float, sxy: float, n: int
) -> tuple[float, float]:
    """Rolling OLS of y on x: (beta, residual of the current point = the spread)."""
    vx = cov(sx, sx, sxx, n)
    if not vx > 0:
        return np.nan, np.nan
    beta = cov(sx, sy, sxy, n) / vx
    alpha = sy / n - beta * (sx / n)
    return beta, y - beta * x - alpha


@nb.njit(cache=True, inline="always")
def zscore(v: float, s: float, ss: float, n: int) -> float:
    """(v - window mean) / window std."""
    sd = std(s, ss, n)
    return (v - s / n) / sd


@nb.njit(cache=True, inline="always")
def half_life(sx: float, sy: float, sxx: float, sxy: float, n: int, cap: float) -> float:
    """Half-life (bars) from the AR(1) fit ds_t = a + b s_{t-1}: -ln2 / ln(1 + b), capped."""
    vx = cov(sx, sx, sxx, n)
    if not vx > 0:
        return np.nan
    b = cov(sx, sy, sxy, n) / vx
    if b >= 0.0:
        return cap
    if b <= -1.0:
        return 0.0
    return min(cap, -math.log(2.0) / math.log1p(b))


@nb.njit(cache=True, inline="always")
def corr(sa: float, sb: float, saa: float, sbb: float, sab: float, n: int) -> float:
    """Pearson correlation from window sums."""
    va = cov(sa, sa, saa, n)
    vb = cov(sb, sb, sbb, n)
    if not (va > 0 and vb > 0):
        return np.nan
    return cov(sa, sb, sab, n) / math.sqrt(va * vb)


@nb.njit(cache=True, inline="always")
def true_range(h: float, lo: float, prev_close: float) -> float:
    """Wilder's true range; the first bar has only high - low."""
    if np.isnan(prev_close):
        return h - lo
    return max(h - lo, abs(h - prev_close), abs(lo - prev_close))


@nb.njit(cache=True, inline="always")
def rsi(gain_ema: float, loss_ema: float) -> float:
    """RSI from smoothed gains and losses (100 when there were no losses)."""
    if np.isnan(loss_ema):
        return np.nan
    if loss_ema == 0.0:
        return 100.0
    return 100.0 - 100.0 / (1.0 + gain_ema / loss_ema)


@nb.njit(cache=True)
def slope(window: np.ndarray) -> float:
    """OLS slope of the window's values against 0..n-1 (per bar)."""
    n = window.shape[0]
    mean_t = (n - 1) / 2.0
    mean_s = 0.0
    for i in range(n):
        mean_s += window[i]
    mean_s /= n
    num = 0.0
    for i in range(n):
        num += (i - mean_t) * (window[i] - mean_s)
    return float(num / (n * (n * n - 1) / 12.0))


@nb.njit(cache=True, inline="always")
def drawdown(hi: float, lo: float, now: float) -> float:
    """Distance of the spread from its recent extreme: max(high - now, now - low)."""
    return max(hi - now, now - lo)


@nb.njit(cache=True, inline="always")
def diff(a: float, b: float) -> float:
    """a - b (NaN if either is)."""
    return a - b
