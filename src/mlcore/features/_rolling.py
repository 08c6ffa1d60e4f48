"""Compiled window primitives in two forms with the same arithmetic, step for step.

- ring form (streaming): :func:`ring_push` adds one value to a fixed window kept in a buffer;
- array form (batch): :func:`rolling_sum` / :func:`ema_array` run over a whole series.

Both keep a running sum, count missing values in the window, and re-add the window (oldest
value first) once per window length, so rounding drift stays bounded and the two forms give
bit-identical sums. A window sum is NaN until the window is full and holds no missing value.
An EMA is ``pandas.Series.ewm(alpha, adjust=False)``: it starts at the first finite value.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Columns of the integer ring metadata; running sums live in their own float array.
R_POS, R_COUNT, R_NAN, R_SINCE = 0, 1, 2, 3
R_META = 4
# Columns of the EMA array.
E_VALUE, E_STARTED = 0, 1


@nb.njit(cache=True, inline="always")
def ring_push(
    buf: np.ndarray, meta: np.ndarray, sums: np.ndarray, win: np.ndarray, r: int, v: float
) -> float:
    """Push ``v`` into ring ``r``; return the window sum (NaN until full and clean)."""
    w = win[r]
    pos = meta[r, R_POS]
    count = meta[r, R_COUNT]
    s = sums[r]
    if count == w:
        old = buf[r, pos]
        if np.isnan(old):
            meta[r, R_NAN] -= 1
        else:
            s = s - old
    else:
        count += 1
        meta[r, R_COUNT] = count
    buf[r, pos] = v
    if np.isnan(v):
        meta[r, R_NAN] += 1
    else:
        s = s + v
    pos += 1
    if pos == w:
        pos = 0
    meta[r, R_POS] = pos
    since = meta[r, R_SINCE] + 1
    if since >= w:
        start = pos if count == w else 0
        s = 0.0
        for i in range(count):
            j = start + i
            x = buf[r, j - w if j >= w else j]
            if not np.isnan(x):
                s = s + x
        since = 0
    meta[r, R_SINCE] = since
    sums[r] = s
    if count == w and meta[r, R_NAN] == 0:
        return float(s)
    return np.nan


@nb.njit(cache=True)
def rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Window sums of ``x`` over ``w`` values, as successive :func:`ring_push` calls give."""
    n = x.shape[0]
    out = np.empty(n)
    s = 0.0
    nan = 0
    since = 0
    for t in range(n):
        count = min(t + 1, w)
        if t >= w:
            old = x[t - w]
            if np.isnan(old):
                nan -= 1
            else:
                s = s - old
        v = x[t]
        if np.isnan(v):
            nan += 1
        else:
            s = s + v
        since += 1
        if since >= w:
            s = 0.0
            for i in range(t - count + 1, t + 1):
                if not np.isnan(x[i]):
                    s = s + x[i]
            since = 0
        out[t] = s if (count == w and nan == 0) else np.nan
    return out


@nb.njit(cache=True, inline="always")
def ema_update(value: float, started: bool, alpha: float, v: float) -> tuple[float, bool]:
    """One EMA step: (new value, started). NaN inputs leave it unchanged."""
    if np.isnan(v):
        return value, started
    if started:
        return alpha * v + (1.0 - alpha) * value, True
    return v, True


@nb.njit(cache=True, inline="always")
def ema_push(ema: np.ndarray, e: int, alpha: float, v: float) -> float:
    """Update the stored EMA ``e`` with ``v`` and return it (NaN before its first input)."""
    value, started = ema_update(ema[e, E_VALUE], ema[e, E_STARTED] != 0.0, alpha, v)
    ema[e, E_VALUE] = value
    ema[e, E_STARTED] = 1.0 if started else 0.0
    return float(value) if started else np.nan


@nb.njit(cache=True)
def ema_array(x: np.ndarray, alpha: float) -> np.ndarray:
    """EMA of a whole series, as successive :func:`ema_push` calls give."""
    out = np.empty(x.shape[0])
    value = 0.0
    started = False
    for t in range(x.shape[0]):
        value, started = ema_update(value, started, alpha, x[t])
        out[t] = value if started else np.nan
    return out


@nb.njit(cache=True)
def ring_window(
    buf: np.ndarray, meta: np.ndarray, win: np.ndarray, r: int, out: np.ndarray
) -> bool:
    """Copy ring ``r`` oldest-first into ``out``; False unless the window is full and clean."""
    w = win[r]
    if meta[r, R_COUNT] != w or meta[r, R_NAN] != 0:
        return False
    pos = meta[r, R_POS]
    for i in range(w):
        j = pos + i
        out[i] = buf[r, j - w if j >= w else j]
    return True


@nb.njit(cache=True)
def rolling_extremes(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Window max and min (NaN unless the window is full and clean), O(n) with deques."""
    n = x.shape[0]
    hi = np.full(n, np.nan)
    lo = np.full(n, np.nan)
    qmax = np.empty(n, dtype=np.int64)
    qmin = np.empty(n, dtype=np.int64)
    hmax = tmax = hmin = tmin = 0
    last_nan = -1
    for t in range(n):
        v = x[t]
        if np.isnan(v):
            last_nan = t
            hmax = tmax = hmin = tmin = 0
            continue
        while tmax > hmax and x[qmax[tmax - 1]] <= v:
            tmax -= 1
        qmax[tmax] = t
        tmax += 1
        while tmin > hmin and x[qmin[tmin - 1]] >= v:
            tmin -= 1
        qmin[tmin] = t
        tmin += 1
        while qmax[hmax] <= t - w:
            hmax += 1
        while qmin[hmin] <= t - w:
            hmin += 1
        if t - last_nan >= w:
            hi[t] = x[qmax[hmax]]
            lo[t] = x[qmin[hmin]]
    return hi, lo
