"""Compiled pair-feature kernels: window primitives, the formulas, the streaming step and the
batch passes, in one module so numba's on-disk cache is invalidated whenever any of them changes.

- Window primitives come in two forms with the same arithmetic, step for step: the ring form
  (:func:`ring_push`, streaming) and the array form (:func:`rolling_sum`, :func:`ema_array`,
  batch). Both keep a running sum (``s = s + (v - old)``, missing values counting as 0), count
  missing values in the window, and re-add the window oldest first once per window length, so
  rounding drift stays bounded and both forms give bit-identical sums. A window sum is NaN until
  the window is full and holds no missing value. An EMA is ``pandas.Series.ewm(alpha,
  adjust=False)``: it starts at the first finite value.
- The formulas are written once, as scalar functions both engines call.
- A feature at bar t depends on bars <= t only.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from mlcore.config import PairFeatureWindows

# --- window primitives -------------------------------------------------------------------

# Columns of the integer ring metadata; running sums live in their own float array.
R_POS, R_COUNT, R_NAN, R_SINCE = 0, 1, 2, 3
R_META = 4
# Columns of the EMA array.
E_VALUE, E_STARTED = 0, 1


@nb.njit(cache=True, inline="always")
def zero_nan(v: float) -> float:
    """Missing values add nothing to a window sum."""
    return v if v == v else 0.0


@nb.njit(cache=True, inline="always")
def ring_push(
    buf: np.ndarray, meta: np.ndarray, sums: np.ndarray, win: np.ndarray, r: int, v: float
) -> float:
    """Push ``v`` into ring ``r``; return the window sum (NaN until full and clean).

    Arithmetic, shared with the batch passes: ``s = s + (v - old)`` once the window is full
    (``s = s + v`` while it fills), missing values counting as 0, and every ``w`` pushes the
    window is re-added oldest first.
    """
    w = win[r]
    pos = meta[r, R_POS]
    count = meta[r, R_COUNT]
    if count == w:
        old = buf[r, pos]
        if old != old:
            meta[r, R_NAN] -= 1
        s = sums[r] + (zero_nan(v) - zero_nan(old))
    else:
        count += 1
        meta[r, R_COUNT] = count
        s = sums[r] + zero_nan(v)
    buf[r, pos] = v
    if v != v:
        meta[r, R_NAN] += 1
    pos += 1
    if pos == w:
        pos = 0
    meta[r, R_POS] = pos
    since = meta[r, R_SINCE] + 1
    if since == w:
        start = pos if count == w else 0
        s = 0.0
        for i in range(count):
            j = start + i
            s = s + zero_nan(buf[r, j - w if j >= w else j])
        since = 0
    meta[r, R_SINCE] = since
    sums[r] = s
    if count == w and meta[r, R_NAN] == 0:
        return float(s)
    return np.nan


@nb.njit(cache=True)
def _rolling_sum_general(x: np.ndarray, w: int, out: np.ndarray) -> None:
    s = 0.0
    last_nan = -1 - w
    since = 0
    for t in range(x.shape[0]):
        if x[t] != x[t]:
            last_nan = t
        if t >= w:
            s = s + (zero_nan(x[t]) - zero_nan(x[t - w]))
        else:
            s = s + zero_nan(x[t])
        since += 1
        if since == w:
            since = 0
            s = 0.0
            for i in range(t - w + 1, t + 1):
                s = s + zero_nan(x[i])
        out[t] = s if (t >= w - 1 and t - last_nan >= w) else np.nan


@nb.njit(cache=True)
def _rolling_sum_prefix(x: np.ndarray, w: int, first: int, out: np.ndarray) -> None:
    # Missing values only before ``first`` (a warm-up): the same arithmetic as the general
    # loop, without per-value checks. Missing values add 0, and v - 0.0 == v exactly.
    n = x.shape[0]
    s = 0.0
    for b in range(0, n, w):
        end = min(b + w, n)
        lo = max(b, first)
        for t in range(lo, end):
            if t - w >= first:
                break
            s = s + x[t]
            out[t] = s
        else:
            t = end
        for u in range(max(t, lo), end):
            s = s + (x[u] - x[u - w])
            out[u] = s
        if end == b + w:
            # The window is re-added once per window length (the ring's schedule).
            s = 0.0
            for i in range(max(b, first), end):
                s = s + x[i]
            out[end - 1] = s
    for t in range(min(n, first + w - 1)):
        out[t] = np.nan


@nb.njit(cache=True)
def rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Window sums of ``x`` over ``w`` values, as successive :func:`ring_push` calls give."""
    n = x.shape[0]
    out = np.empty(n)
    first = 0
    while first < n and x[first] != x[first]:
        first += 1
    for t in range(first, n):
        if x[t] != x[t]:
            _rolling_sum_general(x, w, out)
            return out
    _rolling_sum_prefix(x, w, first, out)
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


# --- formulas ------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def f_cov(sx: float, sy: float, sxy: float, n: int) -> float:
    """Sample covariance (ddof=1) from window sums."""
    return (sxy - sx * sy / n) / (n - 1)


# A window variance is taken as zero (the series is flat) when it is below the rounding noise
# of its sums (relative to the mean square) or below an absolute floor; features that divide by
# it are then NaN instead of amplified rounding noise.
_VAR_REL = 1e-10
_VAR_FLOOR = 1e-24


@nb.njit(cache=True, inline="always")
def f_var(sx: float, sxx: float, n: int) -> float:
    """Sample variance (ddof=1) from window sums; NaN when the window is flat."""
    v = f_cov(sx, sx, sxx, n)
    return v if v > max(_VAR_FLOOR, _VAR_REL * sxx / n) else np.nan


# Moves smaller than this (log units or price units) are rounding noise, not market moves.
_MOVE_FLOOR = 1e-12


@nb.njit(cache=True, inline="always")
def f_ratio(a: float, b: float) -> float:
    """a / b for sizes of moves: NaN when b is rounding noise."""
    return a / b if b > _MOVE_FLOOR else np.nan


@nb.njit(cache=True, inline="always")
def f_div(a: float, b: float) -> float:
    """a / b, NaN when b is 0 (compiled float division would raise)."""
    return a / b if b != 0.0 else np.nan


@nb.njit(cache=True, inline="always")
def f_std(sx: float, sxx: float, n: int) -> float:
    """Sample standard deviation (ddof=1) from window sums; NaN when the window is flat."""
    v = f_var(sx, sxx, n)
    return math.sqrt(v) if v == v else np.nan


@nb.njit(cache=True, inline="always")
def f_ols(
    x: float, y: float, sx: float, sy: float, sxx: float, sxy: float, n: int
) -> tuple[float, float]:
    """Rolling OLS of y on x: (beta, residual of the current point = the spread)."""
    vx = f_var(sx, sxx, n)
    if vx != vx:
        return np.nan, np.nan
    beta = f_cov(sx, sy, sxy, n) / vx
    alpha = sy / n - beta * (sx / n)
    return beta, y - beta * x - alpha


@nb.njit(cache=True, inline="always")
def f_zscore(v: float, s: float, ss: float, n: int) -> float:
    """(v - window mean) / window std."""
    sd = f_std(s, ss, n)
    return (v - s / n) / sd


@nb.njit(cache=True, inline="always")
def f_half_life(sx: float, sy: float, sxx: float, sxy: float, n: int, cap: float) -> float:
    """Half-life (bars) from the AR(1) fit ds_t = a + b s_{t-1}: -ln2 / ln(1 + b), capped."""
    vx = f_var(sx, sxx, n)
    if vx != vx:
        return np.nan
    b = f_cov(sx, sy, sxy, n) / vx
    if b >= 0.0:
        return cap
    if b <= -1.0:
        return 0.0
    return min(cap, -math.log(2.0) / math.log1p(b))


@nb.njit(cache=True, inline="always")
def f_corr(sa: float, sb: float, saa: float, sbb: float, sab: float, n: int) -> float:
    """Pearson correlation from window sums."""
    va = f_var(sa, saa, n)
    vb = f_var(sb, sbb, n)
    if va != va or vb != vb:
        return np.nan
    return f_cov(sa, sb, sab, n) / math.sqrt(va * vb)


@nb.njit(cache=True, inline="always")
def f_true_range(h: float, lo: float, prev_close: float) -> float:
    """Wilder's true range; the first bar has only high - low."""
    if np.isnan(prev_close):
        return h - lo
    return max(h - lo, abs(h - prev_close), abs(lo - prev_close))


@nb.njit(cache=True, inline="always")
def f_rsi(gain_ema: float, loss_ema: float) -> float:
    """RSI from smoothed gains and losses (100 when there were no losses; NaN when flat)."""
    if np.isnan(loss_ema) or gain_ema + loss_ema <= _MOVE_FLOOR:
        return np.nan
    if loss_ema == 0.0:
        return 100.0
    return 100.0 - 100.0 / (1.0 + gain_ema / loss_ema)


@nb.njit(cache=True)
def f_slope(window: np.ndarray) -> float:
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
def f_drawdown(hi: float, lo: float, now: float) -> float:
    """Distance of the spread from its recent extreme: max(high - now, now - low)."""
    return max(hi - now, now - lo)


@nb.njit(cache=True, inline="always")
def f_diff(a: float, b: float) -> float:
    """a - b (NaN if either is)."""
    return a - b


# --- pair features -------------------------------------------------------------------------


PAIR_FEATURES = (
    "beta",
    "spread",
    "z",
    "dz",
    "z_ema",
    "dz_ema",
    "atr_spread",
    "half_life",
    "rho_rolling",
    "rho_var",
    "beta_stability",
    "atr_A",
    "atr_B",
    "atr_ratio",
    "ema_gap_spread",
    "slope_spread",
    "rsi_spread",
    "dd_recent",
)
N_PAIR = len(PAIR_FEATURES)
(
    F_BETA, F_SPREAD, F_Z, F_DZ, F_ZEMA, F_DZEMA, F_ATRS, F_HL, F_RHO, F_RHOVAR, F_BSTAB,
    F_ATRA, F_ATRB, F_ATRR, F_EGAP, F_SLOPE, F_RSI, F_DD,
) = range(N_PAIR)  # fmt: skip

# Rings of the streaming engine (one per windowed series).
(
    R_BX, R_BY, R_BXX, R_BXY, R_ZS, R_ZSS, R_ATRS, R_ATRL, R_HX, R_HY, R_HXX, R_HXY,
    R_RA, R_RB, R_RAA, R_RBB, R_RAB, R_RHO, R_RHO2, R_B, R_B2, R_TRA, R_TRB, R_SL, R_DD,
) = range(25)  # fmt: skip
N_RINGS = 25
E_Z, E_DZ, E_FAST, E_SLOW, E_GAIN, E_LOSS = range(6)
N_EMAS = 6
# Scalars carried from bar to bar.
S_LA, S_LB, S_CA, S_CB, S_SPREAD, S_Z, S_AX, S_AY, S_ANCHORED, S_BARS = range(10)
N_SCALARS = 10
# Window lengths (W_*) and parameters (P_*), packed into one array for the kernels.
(
    W_BETA, W_Z, W_ATR, W_ATRL, W_HL, W_RHO, W_RV, W_BS, W_SL, W_DD,
) = range(10)  # fmt: skip
P_HL_CAP, P_A_Z, P_A_DZ, P_A_FAST, P_A_SLOW, P_A_RSI = range(6)


def windows_array(w: PairFeatureWindows) -> np.ndarray:
    """Window lengths in the order of the W_* indices."""
    return np.array(
        [
            w.beta_window,
            w.z_window,
            w.atr_window,
            w.atr_long_window,
            w.half_life_window,
            w.rho_window,
            w.rho_var_window,
            w.beta_stability_window,
            w.slope_window,
            w.dd_window,
        ],
        dtype=np.int64,
    )


def params(w: PairFeatureWindows) -> np.ndarray:
    """Scalar parameters in the order of the P_* indices."""
    return np.array(
        [
            w.half_life_cap_bars,
            2.0 / (w.z_ema_span + 1),
            2.0 / (w.dz_ema_span + 1),
            2.0 / (w.ema_fast_span + 1),
            2.0 / (w.ema_slow_span + 1),
            1.0 / w.rsi_window,
        ]
    )


def ring_windows(wa: np.ndarray) -> np.ndarray:
    """Window length of each streaming ring."""
    win = np.empty(N_RINGS, dtype=np.int64)
    win[[R_BX, R_BY, R_BXX, R_BXY]] = wa[W_BETA]
    win[[R_ZS, R_ZSS]] = wa[W_Z]
    win[[R_ATRS, R_TRA, R_TRB]] = wa[W_ATR]
    win[R_ATRL] = wa[W_ATRL]
    win[[R_HX, R_HY, R_HXX, R_HXY]] = wa[W_HL]
    win[[R_RA, R_RB, R_RAA, R_RBB, R_RAB]] = wa[W_RHO]
    win[[R_RHO, R_RHO2]] = wa[W_RV]
    win[[R_B, R_B2]] = wa[W_BS]
    win[R_SL] = wa[W_SL]
    win[R_DD] = wa[W_DD]
    return win


def empty_state(win: np.ndarray) -> dict[str, np.ndarray]:
    """A fresh streaming state: ring buffers and metadata, sums, EMAs, scalars, a scratch row."""
    sc = np.zeros(N_SCALARS)
    sc[[S_LA, S_LB, S_CA, S_CB, S_SPREAD, S_Z]] = np.nan
    return {
        "buf": np.full((N_RINGS, int(win.max())), np.nan),
        "meta": np.zeros((N_RINGS, R_META), dtype=np.int64),
        "sums": np.zeros(N_RINGS),
        "ema": np.zeros((N_EMAS, 2)),
        "sc": sc,
        "tmp": np.empty(int(win.max())),
    }


# --- streaming -----------------------------------------------------------------------------


@nb.njit(cache=True)
def _stream_spread(buf, meta, sums, win, wa, sc, la, lb, out):  # type: ignore[no-untyped-def]
    if sc[S_ANCHORED] == 0.0:
        # Anchoring the logs keeps window sums small (no cancellation); beta is unchanged.
        sc[S_AX], sc[S_AY], sc[S_ANCHORED] = lb, la, 1.0
    x = lb - sc[S_AX]
    y = la - sc[S_AY]
    sx = ring_push(buf, meta, sums, win, R_BX, x)
    sy = ring_push(buf, meta, sums, win, R_BY, y)
    sxx = ring_push(buf, meta, sums, win, R_BXX, x * x)
    sxy = ring_push(buf, meta, sums, win, R_BXY, x * y)
    beta, spread = f_ols(x, y, sx, sy, sxx, sxy, wa[W_BETA])
    out[F_BETA] = beta
    out[F_SPREAD] = spread
    sb = ring_push(buf, meta, sums, win, R_B, beta)
    sbb = ring_push(buf, meta, sums, win, R_B2, beta * beta)
    out[F_BSTAB] = f_std(sb, sbb, wa[W_BS])


@nb.njit(cache=True)
def _stream_z(buf, meta, sums, win, wa, ema, sc, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    s = ring_push(buf, meta, sums, win, R_ZS, spread)
    ss = ring_push(buf, meta, sums, win, R_ZSS, spread * spread)
    z = f_zscore(spread, s, ss, wa[W_Z])
    dz = f_diff(z, sc[S_Z])
    out[F_Z] = z
    out[F_DZ] = dz
    out[F_ZEMA] = ema_push(ema, E_Z, p[P_A_Z], z)
    out[F_DZEMA] = ema_push(ema, E_DZ, p[P_A_DZ], dz)
    sc[S_Z] = z


@nb.njit(cache=True)
def _stream_dynamics(buf, meta, sums, win, wa, ema, sc, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    prev = sc[S_SPREAD]
    ds = f_diff(spread, prev)
    atr_s = ring_push(buf, meta, sums, win, R_ATRS, abs(ds)) / wa[W_ATR]
    out[F_ATRS] = atr_s
    out[F_ATRR] = f_ratio(atr_s, ring_push(buf, meta, sums, win, R_ATRL, atr_s) / wa[W_ATRL])
    hx = ring_push(buf, meta, sums, win, R_HX, prev)
    hy = ring_push(buf, meta, sums, win, R_HY, ds)
    hxx = ring_push(buf, meta, sums, win, R_HXX, prev * prev)
    hxy = ring_push(buf, meta, sums, win, R_HXY, prev * ds)
    out[F_HL] = f_half_life(hx, hy, hxx, hxy, wa[W_HL], p[P_HL_CAP])
    fast = ema_push(ema, E_FAST, p[P_A_FAST], spread)
    out[F_EGAP] = fast - ema_push(ema, E_SLOW, p[P_A_SLOW], spread)
    gain = max(ds, 0.0) if not np.isnan(ds) else np.nan
    loss = max(-ds, 0.0) if not np.isnan(ds) else np.nan
    g = ema_push(ema, E_GAIN, p[P_A_RSI], gain)
    out[F_RSI] = f_rsi(g, ema_push(ema, E_LOSS, p[P_A_RSI], loss))
    sc[S_SPREAD] = spread


@nb.njit(cache=True)
def _stream_windows(buf, meta, sums, win, wa, tmp, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    ring_push(buf, meta, sums, win, R_SL, spread)
    w_sl = wa[W_SL]
    if ring_window(buf, meta, win, R_SL, tmp[:w_sl]):
        out[F_SLOPE] = f_slope(tmp[:w_sl])
    else:
        out[F_SLOPE] = np.nan
    ring_push(buf, meta, sums, win, R_DD, spread)
    w_dd = wa[W_DD]
    if ring_window(buf, meta, win, R_DD, tmp[:w_dd]):
        out[F_DD] = f_drawdown(tmp[:w_dd].max(), tmp[:w_dd].min(), spread)
    else:
        out[F_DD] = np.nan


@nb.njit(cache=True)
def _stream_legs(buf, meta, sums, win, wa, sc, la, lb, bar, out):  # type: ignore[no-untyped-def]
    ra = f_diff(la, sc[S_LA])
    rb = f_diff(lb, sc[S_LB])
    sa = ring_push(buf, meta, sums, win, R_RA, ra)
    sb = ring_push(buf, meta, sums, win, R_RB, rb)
    saa = ring_push(buf, meta, sums, win, R_RAA, ra * ra)
    sbb = ring_push(buf, meta, sums, win, R_RBB, rb * rb)
    sab = ring_push(buf, meta, sums, win, R_RAB, ra * rb)
    rho = f_corr(sa, sb, saa, sbb, sab, wa[W_RHO])
    out[F_RHO] = rho
    s1 = ring_push(buf, meta, sums, win, R_RHO, rho)
    s2 = ring_push(buf, meta, sums, win, R_RHO2, rho * rho)
    out[F_RHOVAR] = f_cov(s1, s1, s2, wa[W_RV])
    tra = ring_push(buf, meta, sums, win, R_TRA, f_true_range(bar[0], bar[1], sc[S_CA]))
    trb = ring_push(buf, meta, sums, win, R_TRB, f_true_range(bar[3], bar[4], sc[S_CB]))
    out[F_ATRA] = tra / wa[W_ATR] / bar[2]
    out[F_ATRB] = trb / wa[W_ATR] / bar[5]
    sc[S_LA], sc[S_LB], sc[S_CA], sc[S_CB] = la, lb, bar[2], bar[5]


@nb.njit(cache=True)
def pair_step(bar, buf, meta, sums, win, wa, ema, sc, p, tmp, out):  # type: ignore[no-untyped-def]
    """Add one aligned bar (high_A, low_A, close_A, high_B, low_B, close_B); write ``out``."""
    la = math.log(bar[2])
    lb = math.log(bar[5])
    _stream_spread(buf, meta, sums, win, wa, sc, la, lb, out)
    _stream_z(buf, meta, sums, win, wa, ema, sc, p, out)
    _stream_dynamics(buf, meta, sums, win, wa, ema, sc, p, out)
    _stream_windows(buf, meta, sums, win, wa, tmp, out)
    _stream_legs(buf, meta, sums, win, wa, sc, la, lb, bar, out)
    sc[S_BARS] += 1.0


# --- batch ---------------------------------------------------------------------------------
# ``out`` is feature-major (features x bars) so every pass reads and writes contiguous memory.


@nb.njit(cache=True)
def _batch_spread(la, lb, wa, out):  # type: ignore[no-untyped-def]
    x = lb - lb[0]
    y = la - la[0]
    w = wa[W_BETA]
    sx, sy = rolling_sum(x, w), rolling_sum(y, w)
    sxx, sxy = rolling_sum(x * x, w), rolling_sum(x * y, w)
    beta, spread = out[F_BETA], out[F_SPREAD]
    for t in range(la.shape[0]):
        beta[t], spread[t] = f_ols(x[t], y[t], sx[t], sy[t], sxx[t], sxy[t], w)
    sb, sbb = rolling_sum(beta, wa[W_BS]), rolling_sum(beta * beta, wa[W_BS])
    bstab = out[F_BSTAB]
    for t in range(la.shape[0]):
        bstab[t] = f_std(sb[t], sbb[t], wa[W_BS])


@nb.njit(cache=True)
def _batch_z(wa, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    n = spread.shape[0]
    s, ss = rolling_sum(spread, wa[W_Z]), rolling_sum(spread * spread, wa[W_Z])
    z, dz = out[F_Z], out[F_DZ]
    prev = np.nan
    for t in range(n):
        zt = f_zscore(spread[t], s[t], ss[t], wa[W_Z])
        z[t] = zt
        dz[t] = f_diff(zt, prev)
        prev = zt
    out[F_ZEMA] = ema_array(z, p[P_A_Z])
    out[F_DZEMA] = ema_array(dz, p[P_A_DZ])


@nb.njit(cache=True)
def _batch_dynamics(wa, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    n = spread.shape[0]
    prev = np.empty(n)
    prev[0] = np.nan
    prev[1:] = spread[:-1]
    ds = spread - prev
    atr_s = rolling_sum(np.abs(ds), wa[W_ATR]) / wa[W_ATR]
    out[F_ATRS] = atr_s
    long_mean = rolling_sum(atr_s, wa[W_ATRL]) / wa[W_ATRL]
    ratio = out[F_ATRR]
    for t in range(n):
        ratio[t] = f_ratio(atr_s[t], long_mean[t])
    w = wa[W_HL]
    hx, hy = rolling_sum(prev, w), rolling_sum(ds, w)
    hxx, hxy = rolling_sum(prev * prev, w), rolling_sum(prev * ds, w)
    hl = out[F_HL]
    for t in range(n):
        hl[t] = f_half_life(hx[t], hy[t], hxx[t], hxy[t], w, p[P_HL_CAP])
    out[F_EGAP] = ema_array(spread, p[P_A_FAST]) - ema_array(spread, p[P_A_SLOW])
    gain = np.where(np.isnan(ds), np.nan, np.maximum(ds, 0.0))
    loss = np.where(np.isnan(ds), np.nan, np.maximum(-ds, 0.0))
    g, lo = ema_array(gain, p[P_A_RSI]), ema_array(loss, p[P_A_RSI])
    rsi = out[F_RSI]
    for t in range(n):
        rsi[t] = f_rsi(g[t], lo[t])


@nb.njit(cache=True)
def _batch_windows(wa, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    w_sl = wa[W_SL]
    full = rolling_sum(spread, w_sl)
    slope = out[F_SLOPE]
    for t in range(spread.shape[0]):
        clean = not np.isnan(full[t])
        slope[t] = f_slope(spread[t - w_sl + 1 : t + 1]) if clean else np.nan
    hi, lo = rolling_extremes(spread, wa[W_DD])
    dd = out[F_DD]
    for t in range(spread.shape[0]):
        dd[t] = f_drawdown(hi[t], lo[t], spread[t])


@nb.njit(cache=True)
def _batch_legs(cols, la, lb, wa, out):  # type: ignore[no-untyped-def]
    n = la.shape[0]
    ra = np.empty(n)
    rb = np.empty(n)
    ra[0] = rb[0] = np.nan
    ra[1:] = la[1:] - la[:-1]
    rb[1:] = lb[1:] - lb[:-1]
    w = wa[W_RHO]
    sa, sb = rolling_sum(ra, w), rolling_sum(rb, w)
    saa, sbb, sab = rolling_sum(ra * ra, w), rolling_sum(rb * rb, w), rolling_sum(ra * rb, w)
    rho = out[F_RHO]
    for t in range(n):
        rho[t] = f_corr(sa[t], sb[t], saa[t], sbb[t], sab[t], w)
    s1, s2 = rolling_sum(rho, wa[W_RV]), rolling_sum(rho * rho, wa[W_RV])
    rv = out[F_RHOVAR]
    for t in range(n):
        rv[t] = f_cov(s1[t], s1[t], s2[t], wa[W_RV])
    tra = np.empty(n)
    trb = np.empty(n)
    ha, lo_a, ca = cols[0], cols[1], cols[2]
    hb, lo_b, cb = cols[3], cols[4], cols[5]
    for t in range(n):
        tra[t] = f_true_range(ha[t], lo_a[t], ca[t - 1] if t else np.nan)
        trb[t] = f_true_range(hb[t], lo_b[t], cb[t - 1] if t else np.nan)
    out[F_ATRA] = rolling_sum(tra, wa[W_ATR]) / wa[W_ATR] / ca
    out[F_ATRB] = rolling_sum(trb, wa[W_ATR]) / wa[W_ATR] / cb


@nb.njit(cache=True)
def pair_batch(cols, wa, p):  # type: ignore[no-untyped-def]
    """Every pair feature for a history given column-wise (6 x n: high_A, low_A, close_A,
    high_B, low_B, close_B), from a fresh state; returns n x features."""
    n = cols.shape[1]
    out = np.empty((N_PAIR, n))
    la = np.empty(n)
    lb = np.empty(n)
    ca, cb = cols[2], cols[5]
    for t in range(n):
        # Scalar log, as the streaming step uses: vectorised logs may differ in the last bit.
        la[t] = math.log(ca[t])
        lb[t] = math.log(cb[t])
    _batch_spread(la, lb, wa, out)
    _batch_z(wa, p, out)
    _batch_dynamics(wa, p, out)
    _batch_windows(wa, out)
    _batch_legs(cols, la, lb, wa, out)
    return out.T


@nb.njit(cache=True)
def pair_stream_run(bars, buf, meta, sums, win, wa, ema, sc, p, tmp):  # type: ignore[no-untyped-def]
    """Run the streaming step over every row of ``bars`` (warming a worker's state)."""
    out = np.empty((bars.shape[0], N_PAIR))
    for t in range(bars.shape[0]):
        pair_step(bars[t], buf, meta, sums, win, wa, ema, sc, p, tmp, out[t])
    return out


# --- single-instrument features ------------------------------------------------------------
# One streaming step is the definition; the batch form runs the same step over an array, so the
# two agree by construction (the pair features have a separate fast batch form).

SINGLE_FEATURES = (
    "ret_1", "ret_5", "ret_20", "zscore_20", "zscore_50", "rsi_14", "macd", "macd_signal",
    "macd_hist", "atr_14", "hv_20", "hv_60", "bb_pos", "bb_width", "donchian_pos", "adx_14",
    "di_plus_14", "di_minus_14", "ema_gap_20", "sma_gap_50", "roll_vwap_gap_20", "stoch_k_14",
    "stoch_d_3", "volume_ratio_20", "approx_spread", "regime", "vol_bucket", "session_flag",
    "sig_ema_cross", "sig_macd", "sig_bb_revert", "sig_donchian_break", "sig_rsi",
)  # fmt: skip
N_SINGLE = len(SINGLE_FEATURES)
(
    G_R1, G_R5, G_R20, G_Z20, G_Z50, G_RSI, G_MACD, G_MACDS, G_MACDH, G_ATR, G_HV20, G_HV60,
    G_BBP, G_BBW, G_DON, G_ADX, G_DIP, G_DIM, G_EGAP, G_SGAP, G_VWAP, G_STK, G_STD, G_VOLR,
    G_SPRD, G_REG, G_VOLB, G_SESS, G_S_EMA, G_S_MACD, G_S_BB, G_S_DON, G_S_RSI,
) = range(N_SINGLE)  # fmt: skip

# Rings of the single-instrument state and their windows.
(
    Q_LC, Q_C20, Q_C20S, Q_C50, Q_C50S, Q_R20, Q_R20S, Q_R60, Q_R60S, Q_TR, Q_H20, Q_L20,
    Q_TPV, Q_V, Q_TP, Q_H14, Q_L14, Q_K, Q_DC, Q_DCP, Q_DCC,
) = range(21)  # fmt: skip
N_QRINGS = 21
SINGLE_RING_WINDOWS = np.array(
    [21, 20, 20, 50, 50, 20, 20, 60, 60, 14, 20, 20, 20, 20, 20, 14, 14, 3, 20, 20, 20],
    dtype=np.int64,
)
# EMAs: rsi gain/loss, ema12, ema26, macd signal, ema20, +DM, -DM, TR, ADX.
(
    X_GAIN, X_LOSS, X_E12, X_E26, X_SIG, X_E20, X_PDM, X_MDM, X_TR, X_ADX,
) = range(10)  # fmt: skip
N_XEMAS = 10
# Scalars: previous close/high/low, previous log close, previous close change, bars seen.
T_C, T_H, T_L, T_DC, T_BARS = range(5)
N_TSCALARS = 5
_ADX_TREND = 25.0


@nb.njit(cache=True)
def _ring_ago(buf: np.ndarray, meta: np.ndarray, win: np.ndarray, r: int, k: int) -> float:
    """The value pushed ``k`` pushes before the newest (NaN when the ring holds fewer)."""
    if meta[r, R_COUNT] <= k:
        return np.nan
    j = meta[r, R_POS] - 1 - k
    return float(buf[r, j + win[r] if j < 0 else j])


@nb.njit(cache=True)
def _ring_extreme(buf: np.ndarray, meta: np.ndarray, win: np.ndarray, r: int, hi: bool) -> float:
    """Max (``hi``) or min of a full, clean ring; NaN otherwise."""
    if meta[r, R_COUNT] != win[r] or meta[r, R_NAN] != 0:
        return np.nan
    v = buf[r, 0]
    for i in range(1, win[r]):
        v = max(v, buf[r, i]) if hi else min(v, buf[r, i])
    return float(v)


@nb.njit(cache=True, inline="always")
def _sign(v: float) -> float:
    if v != v:
        return np.nan
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


@nb.njit(cache=True)
def _single_trend(buf, meta, sums, win, ema, sc, c, out):  # type: ignore[no-untyped-def]
    lc = math.log(c)
    ring_push(buf, meta, sums, win, Q_LC, lc)
    for g, k in ((G_R1, 1), (G_R5, 5), (G_R20, 20)):
        out[g] = lc - _ring_ago(buf, meta, win, Q_LC, k)
    s20 = ring_push(buf, meta, sums, win, Q_C20, c)
    ss20 = ring_push(buf, meta, sums, win, Q_C20S, c * c)
    s50 = ring_push(buf, meta, sums, win, Q_C50, c)
    ss50 = ring_push(buf, meta, sums, win, Q_C50S, c * c)
    out[G_Z20] = f_zscore(c, s20, ss20, 20)
    out[G_Z50] = f_zscore(c, s50, ss50, 50)
    sd20 = f_std(s20, ss20, 20)
    out[G_BBP] = (c - s20 / 20) / (2.0 * sd20)
    out[G_BBW] = 4.0 * sd20 / (s20 / 20)
    out[G_SGAP] = (c - s50 / 50) / c
    e12 = ema_push(ema, X_E12, 2.0 / 13.0, c)
    e26 = ema_push(ema, X_E26, 2.0 / 27.0, c)
    macd = (e12 - e26) / c
    sig = ema_push(ema, X_SIG, 2.0 / 10.0, macd)
    out[G_MACD] = macd
    out[G_MACDS] = sig
    out[G_MACDH] = macd - sig
    out[G_EGAP] = (c - ema_push(ema, X_E20, 2.0 / 21.0, c)) / c
    r = lc - _ring_ago(buf, meta, win, Q_LC, 1)
    out[G_HV20] = f_std(
        ring_push(buf, meta, sums, win, Q_R20, r),
        ring_push(buf, meta, sums, win, Q_R20S, r * r),
        20,
    )
    out[G_HV60] = f_std(
        ring_push(buf, meta, sums, win, Q_R60, r),
        ring_push(buf, meta, sums, win, Q_R60S, r * r),
        60,
    )


@nb.njit(cache=True)
def _single_range(buf, meta, sums, win, ema, sc, h, lo, c, out):  # type: ignore[no-untyped-def]
    pc, ph, pl = sc[T_C], sc[T_H], sc[T_L]
    tr = f_true_range(h, lo, pc)
    out[G_ATR] = ring_push(buf, meta, sums, win, Q_TR, tr) / 14.0 / c
    ring_push(buf, meta, sums, win, Q_H20, h)
    ring_push(buf, meta, sums, win, Q_L20, lo)
    hh = _ring_extreme(buf, meta, win, Q_H20, True)
    ll = _ring_extreme(buf, meta, win, Q_L20, False)
    out[G_DON] = (c - ll) / (hh - ll) if hh > ll else np.nan
    ring_push(buf, meta, sums, win, Q_H14, h)
    ring_push(buf, meta, sums, win, Q_L14, lo)
    h14 = _ring_extreme(buf, meta, win, Q_H14, True)
    l14 = _ring_extreme(buf, meta, win, Q_L14, False)
    k = 100.0 * (c - l14) / (h14 - l14) if h14 > l14 else np.nan
    out[G_STK] = k
    out[G_STD] = ring_push(buf, meta, sums, win, Q_K, k) / 3.0
    up, down = h - ph, pl - lo
    pdm = up if (up > down and up > 0) else 0.0
    mdm = down if (down > up and down > 0) else 0.0
    if pc != pc:
        pdm = mdm = np.nan
    a = 1.0 / 14.0
    str_ = ema_push(ema, X_TR, a, tr if pc == pc else np.nan)
    dip = f_div(100.0 * ema_push(ema, X_PDM, a, pdm), str_)
    dim = f_div(100.0 * ema_push(ema, X_MDM, a, mdm), str_)
    out[G_DIP] = dip
    out[G_DIM] = dim
    dx = 100.0 * abs(dip - dim) / (dip + dim) if (dip + dim) > 0 else np.nan
    adx = ema_push(ema, X_ADX, a, dx)
    out[G_ADX] = adx
    out[G_REG] = np.nan if adx != adx else (1.0 if adx > _ADX_TREND else 0.0)


@nb.njit(cache=True)
def _single_flow(buf, meta, sums, win, ema, sc, h, lo, c, v, ts_ns, out):  # type: ignore[no-untyped-def]
    tp = (h + lo + c) / 3.0
    stpv = ring_push(buf, meta, sums, win, Q_TPV, tp * v)
    sv = ring_push(buf, meta, sums, win, Q_V, v)
    stp = ring_push(buf, meta, sums, win, Q_TP, tp)
    # Without traded volume (FX), the VWAP is the plain mean typical price.
    vwap = stpv / sv if sv > 0 else stp / 20.0
    out[G_VWAP] = (c - vwap) / c
    mean_v = sv / 20.0
    out[G_VOLR] = v / mean_v if mean_v > 0 else (1.0 if mean_v == 0 else np.nan)
    dc = c - sc[T_C]
    dcp = sc[T_DC]
    s1 = ring_push(buf, meta, sums, win, Q_DC, dc)
    s2 = ring_push(buf, meta, sums, win, Q_DCP, dcp)
    s12 = ring_push(buf, meta, sums, win, Q_DCC, dc * dcp)
    cv = f_cov(s1, s2, s12, 20)
    out[G_SPRD] = 2.0 * math.sqrt(-cv) / c if cv < 0 else (0.0 if cv == cv else np.nan)
    ratio = out[G_HV20] / out[G_HV60]
    out[G_VOLB] = (
        np.nan if ratio != ratio else (0.0 if ratio < 0.8 else (1.0 if ratio < 1.25 else 2.0))
    )
    hour = (ts_ns // 3_600_000_000_000) % 24
    out[G_SESS] = 0.0 if hour < 7 else (1.0 if hour < 13 else (2.0 if hour < 21 else 3.0))
    sc[T_DC] = dc


@nb.njit(cache=True)
def _single_signals(buf, meta, win, sc, h, lo, c, out):  # type: ignore[no-untyped-def]
    out[G_S_EMA] = _sign(out[G_MACD])
    out[G_S_MACD] = _sign(out[G_MACDH])
    bbp = out[G_BBP]
    out[G_S_BB] = np.nan if bbp != bbp else (-1.0 if bbp > 1.0 else (1.0 if bbp < -1.0 else 0.0))
    rsi = out[G_RSI]
    out[G_S_RSI] = np.nan if rsi != rsi else (1.0 if rsi < 30 else (-1.0 if rsi > 70 else 0.0))
    # Breakout against the channel of the 19 bars before this one.
    prev_hi = np.nan
    prev_lo = np.nan
    if meta[Q_H20, R_COUNT] == win[Q_H20] and sc[T_BARS] >= 20:
        prev_hi = -np.inf
        prev_lo = np.inf
        for k in range(1, win[Q_H20]):
            prev_hi = max(prev_hi, _ring_ago(buf, meta, win, Q_H20, k))
            prev_lo = min(prev_lo, _ring_ago(buf, meta, win, Q_L20, k))
    if prev_hi != prev_hi:
        out[G_S_DON] = np.nan
    else:
        out[G_S_DON] = 1.0 if c > prev_hi else (-1.0 if c < prev_lo else 0.0)


@nb.njit(cache=True)
def single_step(bar, ts_ns, buf, meta, sums, win, ema, sc, out):  # type: ignore[no-untyped-def]
    """Add one bar (open, high, low, close, volume) at ``ts_ns``; write every single feature."""
    h, lo, c, v = bar[1], bar[2], bar[3], bar[4]
    _single_trend(buf, meta, sums, win, ema, sc, c, out)
    dc = c - sc[T_C]
    gain = max(dc, 0.0) if dc == dc else np.nan
    loss = max(-dc, 0.0) if dc == dc else np.nan
    g = ema_push(ema, X_GAIN, 1.0 / 14.0, gain)
    out[G_RSI] = f_rsi(g, ema_push(ema, X_LOSS, 1.0 / 14.0, loss))
    _single_range(buf, meta, sums, win, ema, sc, h, lo, c, out)
    _single_flow(buf, meta, sums, win, ema, sc, h, lo, c, v, ts_ns, out)
    _single_signals(buf, meta, win, sc, h, lo, c, out)
    sc[T_C], sc[T_H], sc[T_L] = c, h, lo
    sc[T_BARS] += 1.0


@nb.njit(cache=True)
def single_run(bars, ts_ns, buf, meta, sums, win, ema, sc):  # type: ignore[no-untyped-def]
    """Run :func:`single_step` over every row of ``bars`` (n x 5: OHLC and volume)."""
    out = np.empty((bars.shape[0], N_SINGLE))
    for t in range(bars.shape[0]):
        single_step(bars[t], ts_ns[t], buf, meta, sums, win, ema, sc, out[t])
    return out


def empty_single_state() -> dict[str, np.ndarray]:
    """A fresh single-instrument state."""
    sc = np.zeros(N_TSCALARS)
    sc[[T_C, T_H, T_L, T_DC]] = np.nan
    return {
        "buf": np.full((N_QRINGS, int(SINGLE_RING_WINDOWS.max())), np.nan),
        "meta": np.zeros((N_QRINGS, R_META), dtype=np.int64),
        "sums": np.zeros(N_QRINGS),
        "ema": np.zeros((N_XEMAS, 2)),
        "sc": sc,
    }
