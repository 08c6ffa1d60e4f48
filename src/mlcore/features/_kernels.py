"""Compiled feature kernels: window primitives, the formulas and the per-bar steps of the pair
and single-instrument features, in one module so numba's on-disk cache is invalidated whenever
any of them changes.

- The formulas are written once, as scalar functions the steps call.
- Each feature set has one per-bar step that is its definition; batch and streaming run that
  same step, so they agree bit for bit.
- An EMA is ``pandas.Series.ewm(alpha, adjust=False)``: it starts at the first finite value and
  NaN inputs leave it unchanged.
- A feature at bar t depends on bars <= t only.
"""

from __future__ import annotations

import math
from typing import Any

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

    ``s = s + (v - old)`` once the window is full (``s = s + v`` while it fills), missing
    values counting as 0; every ``w`` pushes the window is re-added oldest first, so rounding
    drift stays bounded. Used by the single-instrument step.
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


# --- formulas ------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def f_cov(sx: float, sy: float, sxy: float, inv_n: float, inv_n1: float) -> float:
    """Sample covariance (ddof=1) from window sums over n values (given 1/n and 1/(n-1))."""
    return (sxy - sx * sy * inv_n) * inv_n1


# A window variance is taken as zero (the series is flat) when it is below the rounding noise
# of its sums (relative to the mean square) or below an absolute floor; features that divide by
# it are then NaN instead of amplified rounding noise.
_VAR_REL = 1e-10
_VAR_FLOOR = 1e-24


@nb.njit(cache=True, inline="always")
def f_var(sx: float, sxx: float, inv_n: float, inv_n1: float) -> float:
    """Sample variance (ddof=1) from window sums; NaN when the window is flat."""
    v = f_cov(sx, sx, sxx, inv_n, inv_n1)
    return v if v > max(_VAR_FLOOR, _VAR_REL * sxx * inv_n) else np.nan


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
def f_std(sx: float, sxx: float, inv_n: float, inv_n1: float) -> float:
    """Sample standard deviation (ddof=1) from window sums; NaN when the window is flat."""
    v = f_var(sx, sxx, inv_n, inv_n1)
    return math.sqrt(v) if v == v else np.nan


@nb.njit(cache=True, inline="always")
def f_ols(
    x: float, y: float, sx: float, sy: float, sxx: float, sxy: float, inv_n: float, inv_n1: float
) -> tuple[float, float]:
    """Rolling OLS of y on x: (beta, residual of the current point = the spread)."""
    vx = f_var(sx, sxx, inv_n, inv_n1)
    if vx != vx:
        return np.nan, np.nan
    beta = f_cov(sx, sy, sxy, inv_n, inv_n1) / vx
    alpha = (sy - beta * sx) * inv_n
    return beta, y - beta * x - alpha


@nb.njit(cache=True, inline="always")
def f_zscore(v: float, s: float, ss: float, inv_n: float, inv_n1: float) -> float:
    """(v - window mean) / window std."""
    sd = f_std(s, ss, inv_n, inv_n1)
    return (v - s * inv_n) / sd


_LN2 = math.log(2.0)


@nb.njit(cache=True, inline="always")
def f_half_life(
    sx: float, sy: float, sxx: float, sxy: float, inv_n: float, inv_n1: float, cap: float
) -> float:
    """Half-life (bars) from the AR(1) fit ds_t = a + b s_{t-1}: -ln2 / ln(1 + b), capped."""
    vx = f_var(sx, sxx, inv_n, inv_n1)
    if vx != vx:
        return np.nan
    b = f_cov(sx, sy, sxy, inv_n, inv_n1) / vx
    if b >= 0.0:
        return cap
    if b <= -1.0:
        return 0.0
    return min(cap, -_LN2 / math.log1p(b))


@nb.njit(cache=True, inline="always")
def f_corr(
    sa: float, sb: float, saa: float, sbb: float, sab: float, inv_n: float, inv_n1: float
) -> float:
    """Pearson correlation from window sums."""
    va = f_var(sa, saa, inv_n, inv_n1)
    vb = f_var(sb, sbb, inv_n, inv_n1)
    if va != va or vb != vb:
        return np.nan
    return f_cov(sa, sb, sab, inv_n, inv_n1) / math.sqrt(va * vb)


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


@nb.njit(cache=True, inline="always")
def f_drawdown(hi: float, lo: float, now: float) -> float:
    """Distance of the spread from its recent extreme: max(high - now, now - low)."""
    return max(hi - now, now - lo)


@nb.njit(cache=True, inline="always")
def f_diff(a: float, b: float) -> float:
    """a - b (NaN if either is)."""
    return a - b


# --- pair features -------------------------------------------------------------------------
# One compiled function, :func:`pair_run`, is the definition: batch, warm-up and the streaming
# update (a run over one bar) all call it, so they agree bit for bit. It keeps, per series, a
# ring of the last values (a power of two longer than the longest window plus a chunk) and running
# window sums: a value leaving a window is read back from its ring (products are recomputed
# from their factors, giving the same bits). Every window length ``w`` bars each of its sums is
# re-added oldest first, so rounding drift stays bounded. A window is clean when it is full and
# holds no missing value (tracked as the bar of the latest missing value per series); features
# over windows that are not clean are NaN. Every feature costs O(1) per bar: the slope uses an
# age-weighted running sum, the drawdown block prefix/suffix extremes.

# The pair kernels neither allocate nor return arrays, so they are compiled without numba's
# reference counting: that removes atomic increments and decrements of every array argument on
# every call (measured: 1.5x faster). They release the GIL (the pipelined batch runs two passes
# at once) and divide as IEEE floats (no zero-divisor check: every divisor is guarded by the
# formulas, and bars are checked to be finite and positive before they get here).
_NO_REFCOUNT: dict[str, Any] = {
    "cache": True,
    "_nrt": False,
    "nogil": True,
    "error_model": "numpy",
}

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

# Series kept in rings: anchored logs, beta, spread, its change, its ATR, leg returns, rho,
# leg true ranges.
(
    H_X, H_Y, H_BETA, H_SPREAD, H_DS, H_ATRS, H_RA, H_RB, H_RHO, H_TRA, H_TRB,
) = range(11)  # fmt: skip
N_HIST = 11
# The work runs in stages, each a pass over a chunk of bars: the spread (from the logs); from
# the spread its z-score, ATR, half-life, momentum (EMA gap, RSI) and shape (slope, drawdown);
# the legs (returns, correlation, ATRs). Short passes let the processor overlap consecutive bars
# and keep the rings in cache. Each stage owns its sums, EMAs, scalars and missing-value
# tracking, and reads other stages' output only at bars <= its own, so the chunk length changes
# nothing in the results; a chunk of one bar is the streaming update.
ST_SPREAD, ST_Z, ST_ATR, ST_HL, ST_SHAPE, ST_LEGS = range(6)
N_STAGES = 6
CHUNK = 256
# Bar of the latest missing value per series, as each stage sees it (a stage only reads what
# it tracks, so later chunks of earlier stages never leak into it).
(
    L_X, L_Y, L_BETA, L_SPREAD_Z, L_DS, L_ATRS, L_SPREAD_SHAPE, L_RA, L_RB, L_RHO, L_TRA, L_TRB,
    L_DS_HL,
) = range(13)  # fmt: skip
N_LAST = 13
# Window lengths (W_*) and parameters (P_*), packed into one array each for the kernels.
(
    W_BETA, W_Z, W_ATR, W_ATRL, W_HL, W_RHO, W_RV, W_BS, W_SL, W_DD,
) = range(10)  # fmt: skip
N_WINDOWS = 10
# Parameters: the half-life cap, EMA alphas, the slope's normaliser 12 / (w (w^2 - 1)), then
# 1/w and 1/(w - 1) of every window (P_INV + 2 * W_*, + 1): multiplications, not divisions.
P_HL_CAP, P_A_Z, P_A_DZ, P_A_FAST, P_A_SLOW, P_A_RSI, P_SLOPE_K, P_INV = range(8)
# Running window sums.
(
    M_BX, M_BY, M_BXX, M_BXY, M_B, M_B2, M_ZS, M_ZSS, M_ATRS, M_TRA, M_TRB, M_ATRL,
    M_HX, M_HY, M_HXX, M_HXY, M_RA, M_RB, M_RAA, M_RBB, M_RAB, M_RHO, M_RHO2, M_SL, M_SLU,
) = range(25)  # fmt: skip
N_SUMS = 25
# How each sum's terms are made from the rings, for the periodic re-add:
# (stage, window, series a, lag of a, series b, lag of b, kind). Kinds: the value, its absolute
# value, the product a*b, or the value weighted by its age in bars (the slope's second sum).
K_ONE, K_ABS, K_PROD, K_AGE = range(4)
SUM_TERMS = np.array(
    [
        (ST_SPREAD, W_BETA, H_X, 0, 0, 0, K_ONE),
        (ST_SPREAD, W_BETA, H_Y, 0, 0, 0, K_ONE),
        (ST_SPREAD, W_BETA, H_X, 0, H_X, 0, K_PROD),
        (ST_SPREAD, W_BETA, H_X, 0, H_Y, 0, K_PROD),
        (ST_SPREAD, W_BS, H_BETA, 0, 0, 0, K_ONE),
        (ST_SPREAD, W_BS, H_BETA, 0, H_BETA, 0, K_PROD),
        (ST_Z, W_Z, H_SPREAD, 0, 0, 0, K_ONE),
        (ST_Z, W_Z, H_SPREAD, 0, H_SPREAD, 0, K_PROD),
        (ST_ATR, W_ATR, H_DS, 0, 0, 0, K_ABS),
        (ST_LEGS, W_ATR, H_TRA, 0, 0, 0, K_ONE),
        (ST_LEGS, W_ATR, H_TRB, 0, 0, 0, K_ONE),
        (ST_ATR, W_ATRL, H_ATRS, 0, 0, 0, K_ONE),
        (ST_HL, W_HL, H_SPREAD, 1, 0, 0, K_ONE),
        (ST_HL, W_HL, H_DS, 0, 0, 0, K_ONE),
        (ST_HL, W_HL, H_SPREAD, 1, H_SPREAD, 1, K_PROD),
        (ST_HL, W_HL, H_SPREAD, 1, H_DS, 0, K_PROD),
        (ST_LEGS, W_RHO, H_RA, 0, 0, 0, K_ONE),
        (ST_LEGS, W_RHO, H_RB, 0, 0, 0, K_ONE),
        (ST_LEGS, W_RHO, H_RA, 0, H_RA, 0, K_PROD),
        (ST_LEGS, W_RHO, H_RB, 0, H_RB, 0, K_PROD),
        (ST_LEGS, W_RHO, H_RA, 0, H_RB, 0, K_PROD),
        (ST_LEGS, W_RV, H_RHO, 0, 0, 0, K_ONE),
        (ST_LEGS, W_RV, H_RHO, 0, H_RHO, 0, K_PROD),
        (ST_SHAPE, W_SL, H_SPREAD, 0, 0, 0, K_ONE),
        (ST_SHAPE, W_SL, H_SPREAD, 0, 0, 0, K_AGE),
    ],
    dtype=np.int64,
)
E_Z, E_DZ, E_FAST, E_SLOW, E_GAIN, E_LOSS = range(6)
N_EMAS = 6
# Float scalars carried from bar to bar: previous z, previous closes, log anchors, the
# spread's max and min so far in the current block of dd_window bars.
C_Z, C_CA, C_CB, C_AX, C_AY, C_ANCHORED, C_HI, C_LO = range(8)
N_CARRY = 8
# Integer state: bars seen, position in the current block of dd_window bars, per stage the
# next bar at which some of its sums are re-added (I_NEXT + stage), and per stage and window
# that bar (I_DUE + stage * N_WINDOWS + window; -1 when the stage has no sum over that window).
I_T, I_DDPOS, I_NEXT = range(3)
I_DUE = I_NEXT + N_STAGES
N_ISTATE = I_DUE + N_STAGES * N_WINDOWS


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
    sl = w.slope_window
    head = [
        w.half_life_cap_bars,
        2.0 / (w.z_ema_span + 1),
        2.0 / (w.dz_ema_span + 1),
        2.0 / (w.ema_fast_span + 1),
        2.0 / (w.ema_slow_span + 1),
        1.0 / w.rsi_window,
        12.0 / (sl * (sl * sl - 1)),
    ]
    inv = [(1.0 / n, 1.0 / (n - 1)) for n in windows_array(w).tolist()]
    return np.array(head + [v for pair in inv for v in pair])


def ring_size(wa: np.ndarray, chunk: int = CHUNK) -> int:
    """Ring length: a power of two holding the longest window, one lagged value and a chunk
    (a later pass reads values an earlier pass wrote up to a chunk ahead)."""
    return 1 << int(int(wa.max()) + chunk + 2 - 1).bit_length()


def empty_state(wa: np.ndarray) -> dict[str, np.ndarray]:
    """A fresh streaming state: rings, sums, latest-missing bars, EMAs, carried scalars."""
    ring = ring_size(wa)
    carry = np.zeros(N_CARRY)
    carry[[C_Z, C_CA, C_CB]] = np.nan
    istate = np.zeros(N_ISTATE, dtype=np.int64)
    for st in range(N_STAGES):
        due = np.full(N_WINDOWS, -1, dtype=np.int64)
        used = np.unique(SUM_TERMS[SUM_TERMS[:, 0] == st, 1])
        due[used] = wa[used] - 1  # first re-added when the window is first full
        istate[I_DUE + st * N_WINDOWS : I_DUE + (st + 1) * N_WINDOWS] = due
        istate[I_NEXT + st] = due[used].min()
    return {
        "hist": np.full((N_HIST, ring), np.nan),
        "sums": np.zeros(N_SUMS),
        "last_nan": np.full(N_LAST, -1, dtype=np.int64),
        "ema": np.zeros((N_EMAS, 2)),
        "carry": carry,
        "istate": istate,
        "extremes": np.full((2, int(wa[W_DD])), np.nan),
    }


# Two threads can run the passes as a pipeline over chunks: the front (spread, legs) on chunk k
# while the back (z, ATR, half-life, momentum, shape) works on chunk k - 1. Each thread works on
# its own copy of the small state arrays; these masks say which elements the front owns, so the
# copies can be merged afterwards (everything else belongs to the back).
FRONT_STAGES = (ST_SPREAD, ST_LEGS)


def front_masks() -> dict[str, np.ndarray]:
    """Per small state array, True where the front passes own the element."""
    sums = np.isin(SUM_TERMS[:, 0], FRONT_STAGES)
    last_nan = np.zeros(N_LAST, dtype=bool)
    last_nan[[L_X, L_Y, L_BETA, L_RA, L_RB, L_RHO, L_TRA, L_TRB]] = True
    carry = np.zeros(N_CARRY, dtype=bool)
    carry[[C_AX, C_AY, C_ANCHORED, C_CA, C_CB]] = True
    istate = np.zeros(N_ISTATE, dtype=bool)
    for st in FRONT_STAGES:
        istate[I_NEXT + st] = True
        istate[I_DUE + st * N_WINDOWS : I_DUE + (st + 1) * N_WINDOWS] = True
    return {
        "sums": sums,
        "last_nan": last_nan,
        "ema": np.zeros((N_EMAS, 2), dtype=bool),
        "carry": carry,
        "istate": istate,
    }


def resize_ring(hist: np.ndarray, bars_seen: int, ring: int) -> np.ndarray:
    """The same ring contents in a ring of another length (a power of two): the last
    min(old, new) bars keep their values, every other slot is NaN."""
    out = np.full((hist.shape[0], ring), np.nan)
    keep = min(hist.shape[1], ring, bars_seen)
    u = np.arange(bars_seen - keep, bars_seen)
    out[:, u & (ring - 1)] = hist[:, u & (hist.shape[1] - 1)]
    return out


@nb.njit(inline="always", **_NO_REFCOUNT)
def _inv(p, g):  # type: ignore[no-untyped-def]
    """(1/w, 1/(w - 1)) of window ``g``."""
    return p[P_INV + 2 * g], p[P_INV + 2 * g + 1]


@nb.njit(inline="always", **_NO_REFCOUNT)
def _put(hist, last_nan, h, li, j, t, v):  # type: ignore[no-untyped-def]
    hist[h, j] = v
    if v != v:
        last_nan[li] = t


@nb.njit(inline="always", **_NO_REFCOUNT)
def _seen(last_nan, li, t, v):  # type: ignore[no-untyped-def]
    """Track a value a stage reads from another stage's ring."""
    if v != v:
        last_nan[li] = t


@nb.njit(inline="always", **_NO_REFCOUNT)
def _roll(sums, i, new, old):  # type: ignore[no-untyped-def]
    s = sums[i] + (zero_nan(new) - zero_nan(old))
    sums[i] = s
    return s


@nb.njit(inline="always", **_NO_REFCOUNT)
def _clean(last_nan, li, t, w):  # type: ignore[no-untyped-def]
    return t - last_nan[li] >= w


@nb.njit(**_NO_REFCOUNT)
def _window_sum(hist, m, t, w, row):  # type: ignore[no-untyped-def]
    """One sum's window re-added oldest first, its terms made as in the step."""
    a, la, b, lb, kind = row[2], row[3], row[4], row[5], row[6]
    s = 0.0
    for u in range(t - w + 1, t + 1):
        v = hist[a, (u - la) & m]
        if kind == K_ABS:
            v = abs(v)
        elif kind == K_PROD:
            v = v * hist[b, (u - lb) & m]
        v = zero_nan(v)
        s = s + (v * (t - u) if kind == K_AGE else v)
    return s


@nb.njit(**_NO_REFCOUNT)
def _readd(hist, sums, istate, wa, t, st):  # type: ignore[no-untyped-def]
    """Re-add stage ``st``'s sums of every window due at bar ``t`` and schedule the next."""
    m = hist.shape[1] - 1
    base = I_DUE + st * N_WINDOWS
    nxt = -1
    for g in range(N_WINDOWS):
        due = istate[base + g]
        if due < 0:
            continue
        if due == t:
            for i in range(N_SUMS):
                if SUM_TERMS[i, 0] == st and SUM_TERMS[i, 1] == g:
                    sums[i] = _window_sum(hist, m, t, wa[g], SUM_TERMS[i])
            due = t + wa[g]
            istate[base + g] = due
        if nxt < 0 or due < nxt:
            nxt = due
    istate[I_NEXT + st] = nxt


@nb.njit(**_NO_REFCOUNT)
def _block_suffixes(hist, ext, t, w, m):  # type: ignore[no-untyped-def]
    """At the end of a block of ``w`` bars (ending at ``t``), its suffix maxima and minima:
    ``ext[0, i]`` / ``ext[1, i]`` = max / min of the block's values from position i on."""
    hi = -np.inf
    lo = np.inf
    for i in range(w - 1, -1, -1):
        v = hist[H_SPREAD, (t - w + 1 + i) & m]
        if v > hi:
            hi = v
        if v < lo:
            lo = v
        ext[0, i] = hi
        ext[1, i] = lo


@nb.njit(**_NO_REFCOUNT)
def _stage_spread(bars, hist, sums, last_nan, carry, istate, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """Logs, the rolling OLS (beta, spread) and beta stability."""
    m = hist.shape[1] - 1
    for r in range(r0, r1):
        t = t0 + r - r0
        j = t & m
        la = math.log(bars[r, 2])
        lb = math.log(bars[r, 5])
        if carry[C_ANCHORED] == 0.0:
            # Anchored logs keep window sums small (no cancellation); beta is unchanged.
            carry[C_AX], carry[C_AY], carry[C_ANCHORED] = lb, la, 1.0
        x = lb - carry[C_AX]
        y = la - carry[C_AY]
        _put(hist, last_nan, H_X, L_X, j, t, x)
        _put(hist, last_nan, H_Y, L_Y, j, t, y)
        w = wa[W_BETA]
        k = (t - w) & m
        xo, yo = hist[H_X, k], hist[H_Y, k]
        sx = _roll(sums, M_BX, x, xo)
        sy = _roll(sums, M_BY, y, yo)
        sxx = _roll(sums, M_BXX, x * x, xo * xo)
        sxy = _roll(sums, M_BXY, x * y, xo * yo)
        beta = spread = np.nan
        if _clean(last_nan, L_X, t, w) and _clean(last_nan, L_Y, t, w):
            iv, iv1 = _inv(p, W_BETA)
            beta, spread = f_ols(x, y, sx, sy, sxx, sxy, iv, iv1)
        out[F_BETA, r] = beta
        out[F_SPREAD, r] = spread
        hist[H_SPREAD, j] = spread
        _put(hist, last_nan, H_BETA, L_BETA, j, t, beta)
        w = wa[W_BS]
        bo = hist[H_BETA, (t - w) & m]
        sb = _roll(sums, M_B, beta, bo)
        sbb = _roll(sums, M_B2, beta * beta, bo * bo)
        iv, iv1 = _inv(p, W_BS)
        clean = _clean(last_nan, L_BETA, t, w)
        out[F_BSTAB, r] = f_std(sb, sbb, iv, iv1) if clean else np.nan
        if t == istate[I_NEXT + ST_SPREAD]:
            _readd(hist, sums, istate, wa, t, ST_SPREAD)


@nb.njit(**_NO_REFCOUNT)
def _stage_z(hist, sums, last_nan, ema, carry, istate, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """z-score of the spread, its change and their EMAs."""
    m = hist.shape[1] - 1
    w = wa[W_Z]
    iv, iv1 = _inv(p, W_Z)
    for r in range(r0, r1):
        t = t0 + r - r0
        spread = hist[H_SPREAD, t & m]
        _seen(last_nan, L_SPREAD_Z, t, spread)
        so = hist[H_SPREAD, (t - w) & m]
        s = _roll(sums, M_ZS, spread, so)
        ss = _roll(sums, M_ZSS, spread * spread, so * so)
        z = f_zscore(spread, s, ss, iv, iv1) if _clean(last_nan, L_SPREAD_Z, t, w) else np.nan
        dz = f_diff(z, carry[C_Z])
        carry[C_Z] = z
        out[F_Z, r] = z
        out[F_DZ, r] = dz
        out[F_ZEMA, r] = ema_push(ema, E_Z, p[P_A_Z], z)
        out[F_DZEMA, r] = ema_push(ema, E_DZ, p[P_A_DZ], dz)
        if t == istate[I_NEXT + ST_Z]:
            _readd(hist, sums, istate, wa, t, ST_Z)


@nb.njit(**_NO_REFCOUNT)
def _stage_atr(hist, sums, last_nan, istate, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """Changes of the spread, its ATR and the ATR ratio."""
    m = hist.shape[1] - 1
    w, wl = wa[W_ATR], wa[W_ATRL]
    for r in range(r0, r1):
        t = t0 + r - r0
        j = t & m
        ds = f_diff(hist[H_SPREAD, j], hist[H_SPREAD, (t - 1) & m])
        _put(hist, last_nan, H_DS, L_DS, j, t, ds)
        a = _roll(sums, M_ATRS, abs(ds), abs(hist[H_DS, (t - w) & m]))
        atr_s = a * p[P_INV + 2 * W_ATR] if _clean(last_nan, L_DS, t, w) else np.nan
        out[F_ATRS, r] = atr_s
        _put(hist, last_nan, H_ATRS, L_ATRS, j, t, atr_s)
        al = _roll(sums, M_ATRL, atr_s, hist[H_ATRS, (t - wl) & m])
        clean = _clean(last_nan, L_ATRS, t, wl)
        out[F_ATRR, r] = f_ratio(atr_s, al * p[P_INV + 2 * W_ATRL]) if clean else np.nan
        if t == istate[I_NEXT + ST_ATR]:
            _readd(hist, sums, istate, wa, t, ST_ATR)


@nb.njit(**_NO_REFCOUNT)
def _stage_half_life(hist, sums, last_nan, istate, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """Half-life of the spread from an AR(1) fit of its changes on its previous values."""
    m = hist.shape[1] - 1
    w = wa[W_HL]
    iv, iv1 = _inv(p, W_HL)
    for r in range(r0, r1):
        t = t0 + r - r0
        prev = hist[H_SPREAD, (t - 1) & m]
        ds = hist[H_DS, t & m]
        _seen(last_nan, L_DS_HL, t, ds)
        po = hist[H_SPREAD, (t - w - 1) & m]
        dso = hist[H_DS, (t - w) & m]
        hx = _roll(sums, M_HX, prev, po)
        hy = _roll(sums, M_HY, ds, dso)
        hxx = _roll(sums, M_HXX, prev * prev, po * po)
        hxy = _roll(sums, M_HXY, prev * ds, po * dso)
        # A clean window of changes implies a clean window of the spreads they came from.
        hl = np.nan
        if _clean(last_nan, L_DS_HL, t, w):
            hl = f_half_life(hx, hy, hxx, hxy, iv, iv1, p[P_HL_CAP])
        out[F_HL, r] = hl
        if t == istate[I_NEXT + ST_HL]:
            _readd(hist, sums, istate, wa, t, ST_HL)


@nb.njit(**_NO_REFCOUNT)
def _stage_momentum(hist, ema, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """EMA gap and RSI of the spread."""
    m = hist.shape[1] - 1
    for r in range(r0, r1):
        t = t0 + r - r0
        spread = hist[H_SPREAD, t & m]
        ds = hist[H_DS, t & m]
        fast = ema_push(ema, E_FAST, p[P_A_FAST], spread)
        out[F_EGAP, r] = fast - ema_push(ema, E_SLOW, p[P_A_SLOW], spread)
        gain = max(ds, 0.0) if ds == ds else np.nan
        loss = max(-ds, 0.0) if ds == ds else np.nan
        g = ema_push(ema, E_GAIN, p[P_A_RSI], gain)
        out[F_RSI, r] = f_rsi(g, ema_push(ema, E_LOSS, p[P_A_RSI], loss))


@nb.njit(**_NO_REFCOUNT)
def _stage_shape(hist, sums, last_nan, carry, istate, ext, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """Slope of the spread (O(1) per bar) and its distance from the window extremes."""
    m = hist.shape[1] - 1
    w = wa[W_SL]
    w_dd = wa[W_DD]
    for r in range(r0, r1):
        t = t0 + r - r0
        spread = hist[H_SPREAD, t & m]
        _seen(last_nan, L_SPREAD_SHAPE, t, spread)
        so = hist[H_SPREAD, (t - w) & m]
        # Age-weighted sum U_t = sum_k k * s_{t-k}: every value ages by one bar and the
        # leaving one (age w) drops out: U_t = U_{t-1} + S_{t-1} - w * s_{t-w}.
        u = sums[M_SLU] + (sums[M_SL] - w * zero_nan(so))
        sums[M_SLU] = u
        s = _roll(sums, M_SL, spread, so)
        slope = ((w - 1) * 0.5 * s - u) * p[P_SLOPE_K]
        out[F_SLOPE, r] = slope if _clean(last_nan, L_SPREAD_SHAPE, t, w) else np.nan
        # Window extremes from blocks of w_dd bars (van Herk / Gil-Werman): the window is the
        # tail of the previous block (its suffix extremes) plus the current block so far.
        pos = istate[I_DDPOS]
        if pos == 0:
            carry[C_HI], carry[C_LO] = -np.inf, np.inf
        if spread > carry[C_HI]:
            carry[C_HI] = spread
        if spread < carry[C_LO]:
            carry[C_LO] = spread
        hi, lo = carry[C_HI], carry[C_LO]
        if pos < w_dd - 1:
            hi = max(hi, ext[0, pos + 1])
            lo = min(lo, ext[1, pos + 1])
        else:
            _block_suffixes(hist, ext, t, w_dd, m)
        istate[I_DDPOS] = pos + 1 if pos < w_dd - 1 else 0
        clean = _clean(last_nan, L_SPREAD_SHAPE, t, w_dd)
        out[F_DD, r] = f_drawdown(hi, lo, spread) if clean else np.nan
        if t == istate[I_NEXT + ST_SHAPE]:
            _readd(hist, sums, istate, wa, t, ST_SHAPE)


@nb.njit(**_NO_REFCOUNT)
def _stage_legs(bars, hist, sums, last_nan, carry, istate, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """Correlation of the leg returns and its variance, and each leg's ATR."""
    m = hist.shape[1] - 1
    for r in range(r0, r1):
        t = t0 + r - r0
        j = t & m
        jp = (t - 1) & m
        ra = f_diff(hist[H_Y, j], hist[H_Y, jp])
        rb = f_diff(hist[H_X, j], hist[H_X, jp])
        _put(hist, last_nan, H_RA, L_RA, j, t, ra)
        _put(hist, last_nan, H_RB, L_RB, j, t, rb)
        w = wa[W_RHO]
        k = (t - w) & m
        rao, rbo = hist[H_RA, k], hist[H_RB, k]
        sa = _roll(sums, M_RA, ra, rao)
        sb = _roll(sums, M_RB, rb, rbo)
        saa = _roll(sums, M_RAA, ra * ra, rao * rao)
        sbb = _roll(sums, M_RBB, rb * rb, rbo * rbo)
        sab = _roll(sums, M_RAB, ra * rb, rao * rbo)
        rho = np.nan
        if _clean(last_nan, L_RA, t, w) and _clean(last_nan, L_RB, t, w):
            iv, iv1 = _inv(p, W_RHO)
            rho = f_corr(sa, sb, saa, sbb, sab, iv, iv1)
        out[F_RHO, r] = rho
        _put(hist, last_nan, H_RHO, L_RHO, j, t, rho)
        w = wa[W_RV]
        ro = hist[H_RHO, (t - w) & m]
        s1 = _roll(sums, M_RHO, rho, ro)
        s2 = _roll(sums, M_RHO2, rho * rho, ro * ro)
        iv, iv1 = _inv(p, W_RV)
        clean = _clean(last_nan, L_RHO, t, w)
        out[F_RHOVAR, r] = f_cov(s1, s1, s2, iv, iv1) if clean else np.nan
        ca, cb = bars[r, 2], bars[r, 5]
        tra = f_true_range(bars[r, 0], bars[r, 1], carry[C_CA])
        trb = f_true_range(bars[r, 3], bars[r, 4], carry[C_CB])
        carry[C_CA], carry[C_CB] = ca, cb
        _put(hist, last_nan, H_TRA, L_TRA, j, t, tra)
        _put(hist, last_nan, H_TRB, L_TRB, j, t, trb)
        w = wa[W_ATR]
        k = (t - w) & m
        sta = _roll(sums, M_TRA, tra, hist[H_TRA, k])
        stb = _roll(sums, M_TRB, trb, hist[H_TRB, k])
        iw = p[P_INV + 2 * W_ATR]
        out[F_ATRA, r] = sta * iw / ca if _clean(last_nan, L_TRA, t, w) else np.nan
        out[F_ATRB, r] = stb * iw / cb if _clean(last_nan, L_TRB, t, w) else np.nan
        if t == istate[I_NEXT + ST_LEGS]:
            _readd(hist, sums, istate, wa, t, ST_LEGS)


@nb.njit(**_NO_REFCOUNT)
def pair_front(bars, hist, sums, last_nan, carry, istate, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """The passes that read the bars: spread (with beta stability) and the legs."""
    _stage_spread(bars, hist, sums, last_nan, carry, istate, wa, p, out, r0, r1, t0)
    _stage_legs(bars, hist, sums, last_nan, carry, istate, wa, p, out, r0, r1, t0)


@nb.njit(**_NO_REFCOUNT)
def pair_back(hist, sums, last_nan, ema, carry, istate, ext, wa, p, out, r0, r1, t0):  # type: ignore[no-untyped-def]
    """The passes over the spread: z, ATR, half-life, momentum, shape."""
    _stage_z(hist, sums, last_nan, ema, carry, istate, wa, p, out, r0, r1, t0)
    _stage_atr(hist, sums, last_nan, istate, wa, p, out, r0, r1, t0)
    _stage_half_life(hist, sums, last_nan, istate, wa, p, out, r0, r1, t0)
    _stage_momentum(hist, ema, p, out, r0, r1, t0)
    _stage_shape(hist, sums, last_nan, carry, istate, ext, wa, p, out, r0, r1, t0)


@nb.njit(**_NO_REFCOUNT)
def pair_run(bars, hist, sums, last_nan, ema, carry, istate, ext, wa, p, out):  # type: ignore[no-untyped-def]
    """Add aligned bars (n x 6: high_A, low_A, close_A, high_B, low_B, close_B) in order,
    writing each bar's features to column r of ``out`` (features x bars). This is the one
    definition of the pair features: batch, warm-up and the per-bar streaming update all run
    these passes (a pipelined batch runs the same front and back on two threads)."""
    n = bars.shape[0]
    for r0 in range(0, n, CHUNK):
        r1 = min(n, r0 + CHUNK)
        t0 = istate[I_T]
        pair_front(bars, hist, sums, last_nan, carry, istate, wa, p, out, r0, r1, t0)
        pair_back(hist, sums, last_nan, ema, carry, istate, ext, wa, p, out, r0, r1, t0)
        istate[I_T] = t0 + (r1 - r0)


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
    out[G_Z20] = f_zscore(c, s20, ss20, 1.0 / 20, 1.0 / 19)
    out[G_Z50] = f_zscore(c, s50, ss50, 1.0 / 50, 1.0 / 49)
    sd20 = f_std(s20, ss20, 1.0 / 20, 1.0 / 19)
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
        1.0 / 20,
        1.0 / 19,
    )
    out[G_HV60] = f_std(
        ring_push(buf, meta, sums, win, Q_R60, r),
        ring_push(buf, meta, sums, win, Q_R60S, r * r),
        1.0 / 60,
        1.0 / 59,
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
    cv = f_cov(s1, s2, s12, 1.0 / 20, 1.0 / 19)
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
