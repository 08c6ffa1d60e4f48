"""Compiled O(1) building blocks shared by the batch and streaming feature engines.

A *ring* is a fixed window over one series: its values, a running sum, and a count of
missing values inside the window. Running sums are re-added from the buffer once per
window length, so rounding drift stays bounded without recomputing over history.
An *EMA* is ``pandas.Series.ewm(alpha, adjust=False)``: it starts at the first finite value.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Columns of the ring metadata array.
R_POS, R_COUNT, R_SUM, R_NAN, R_SINCE = 0, 1, 2, 3, 4
R_META = 5
# Columns of the EMA array.
E_VALUE, E_STARTED = 0, 1


@nb.njit(cache=True, inline="always")
def ring_push(buf: np.ndarray, meta: np.ndarray, win: np.ndarray, r: int, v: float) -> None:
    """Push ``v`` into ring ``r`` (NaN counts as missing)."""
    w = win[r]
    pos = int(meta[r, R_POS])
    if meta[r, R_COUNT] == w:
        old = buf[r, pos]
        if np.isnan(old):
            meta[r, R_NAN] -= 1
        else:
            meta[r, R_SUM] -= old
    else:
        meta[r, R_COUNT] += 1
    buf[r, pos] = v
    if np.isnan(v):
        meta[r, R_NAN] += 1
    else:
        meta[r, R_SUM] += v
    meta[r, R_POS] = (pos + 1) % w
    meta[r, R_SINCE] += 1
    if meta[r, R_SINCE] >= w:
        total = 0.0
        for i in range(int(meta[r, R_COUNT])):
            x = buf[r, i]
            if not np.isnan(x):
                total += x
        meta[r, R_SUM] = total
        meta[r, R_SINCE] = 0


@nb.njit(cache=True, inline="always")
def ring_full(meta: np.ndarray, win: np.ndarray, r: int) -> bool:
    """True when ring ``r`` holds a whole window without missing values."""
    return bool(meta[r, R_COUNT] == win[r] and meta[r, R_NAN] == 0)


@nb.njit(cache=True, inline="always")
def ring_mean(meta: np.ndarray, win: np.ndarray, r: int) -> float:
    """Window mean, NaN until the window is full and clean."""
    if not ring_full(meta, win, r):
        return np.nan
    return float(meta[r, R_SUM] / win[r])


@nb.njit(cache=True, inline="always")
def ring_cov(meta: np.ndarray, win: np.ndarray, rx: int, ry: int, rxy: int) -> float:
    """Sample covariance (ddof=1) from the rings of x, y and x*y."""
    if not (ring_full(meta, win, rx) and ring_full(meta, win, ry) and ring_full(meta, win, rxy)):
        return np.nan
    n = win[rx]
    return float((meta[rxy, R_SUM] - meta[rx, R_SUM] * meta[ry, R_SUM] / n) / (n - 1))


@nb.njit(cache=True, inline="always")
def ema_push(ema: np.ndarray, e: int, alpha: float, v: float) -> float:
    """Update EMA ``e`` with ``v`` and return it (NaN inputs leave it unchanged)."""
    if np.isnan(v):
        return float(ema[e, E_VALUE]) if ema[e, E_STARTED] else np.nan
    if ema[e, E_STARTED]:
        ema[e, E_VALUE] = alpha * v + (1.0 - alpha) * ema[e, E_VALUE]
    else:
        ema[e, E_VALUE] = v
        ema[e, E_STARTED] = 1.0
    return float(ema[e, E_VALUE])
