"""Pair features: one compiled definition per bar, used by the batch and the streaming engine.

``pair_step`` is the only place the formulas live. :func:`pair_batch` loops it over arrays;
:class:`PairStream` calls it for one new bar with the state it keeps (and can save). Both
therefore give the same value on every bar, and a feature at bar t depends on bars <= t only.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from mlcore.config import PairFeatureWindows
from mlcore.features._rolling import (
    R_META,
    R_SUM,
    ema_push,
    ring_cov,
    ring_full,
    ring_mean,
    ring_push,
)

PAIR_FEATURES = (
    "beta",
    "spread",
    "z",
    "dz",
    "z_ema",
    "dz_abs_ema",
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

# Rings (rolling windows).
(
    R_BX, R_BY, R_BXX, R_BXY, R_ZS, R_ZSS, R_ATRS, R_ATRL, R_HX, R_HY, R_HXX, R_HXY,
    R_RA, R_RB, R_RAA, R_RBB, R_RAB, R_RHO, R_RHO2, R_B, R_B2, R_TRA, R_TRB, R_SL, R_DD,
) = range(25)  # fmt: skip
N_RINGS = 25
# EMAs.
E_Z, E_DZ, E_FAST, E_SLOW, E_GAIN, E_LOSS = range(6)
N_EMAS = 6
# Scalars carried from bar to bar.
S_LA, S_LB, S_CA, S_CB, S_SPREAD, S_Z, S_AX, S_AY, S_ANCHORED, S_BARS = range(10)
N_SCALARS = 10
# Parameters.
P_HL_CAP, P_A_Z, P_A_DZ, P_A_FAST, P_A_SLOW, P_A_RSI = range(6)
N_PARAMS = 6


def ring_windows(w: PairFeatureWindows) -> np.ndarray:
    """Window length of each ring, from the feature policy."""
    win = np.empty(N_RINGS, dtype=np.int64)
    win[[R_BX, R_BY, R_BXX, R_BXY]] = w.beta_window
    win[[R_ZS, R_ZSS]] = w.z_window
    win[[R_ATRS, R_TRA, R_TRB]] = w.atr_window
    win[R_ATRL] = w.atr_long_window
    win[[R_HX, R_HY, R_HXX, R_HXY]] = w.half_life_window
    win[[R_RA, R_RB, R_RAA, R_RBB, R_RAB]] = w.rho_window
    win[[R_RHO, R_RHO2]] = w.rho_var_window
    win[[R_B, R_B2]] = w.beta_stability_window
    win[R_SL] = w.slope_window
    win[R_DD] = w.dd_window
    return win


def params(w: PairFeatureWindows) -> np.ndarray:
    """Scalar parameters of the kernel."""
    p = np.empty(N_PARAMS)
    p[P_HL_CAP] = w.half_life_cap_bars
    p[P_A_Z] = 2.0 / (w.z_ema_span + 1)
    p[P_A_DZ] = 2.0 / (w.dz_ema_span + 1)
    p[P_A_FAST] = 2.0 / (w.ema_fast_span + 1)
    p[P_A_SLOW] = 2.0 / (w.ema_slow_span + 1)
    p[P_A_RSI] = 1.0 / w.rsi_window
    return p


@nb.njit(cache=True)
def _diff(a: float, b: float) -> float:
    return a - b if not (np.isnan(a) or np.isnan(b)) else np.nan


@nb.njit(cache=True)
def _std(meta: np.ndarray, win: np.ndarray, rx: int, rxx: int) -> float:
    v = ring_cov(meta, win, rx, rx, rxx)
    return math.sqrt(v) if v > 0 else np.nan


@nb.njit(cache=True)
def _chronological(buf: np.ndarray, meta: np.ndarray, win: np.ndarray, r: int, i: int) -> float:
    return float(buf[r, (int(meta[r, 0]) + i) % win[r]])


@nb.njit(cache=True)
def _slope(buf: np.ndarray, meta: np.ndarray, win: np.ndarray, r: int) -> float:
    if not ring_full(meta, win, r):
        return np.nan
    w = win[r]
    mean_s = meta[r, R_SUM] / w
    mean_t = (w - 1) / 2.0
    num = 0.0
    for i in range(w):
        num += (i - mean_t) * (_chronological(buf, meta, win, r, i) - mean_s)
    return float(num / (w * (w * w - 1) / 12.0))


@nb.njit(cache=True)
def _drawdown(buf: np.ndarray, meta: np.ndarray, win: np.ndarray, r: int, now: float) -> float:
    if not ring_full(meta, win, r):
        return np.nan
    hi = -np.inf
    lo = np.inf
    for i in range(win[r]):
        v = buf[r, i]
        hi = max(hi, v)
        lo = min(lo, v)
    return max(hi - now, now - lo)


@nb.njit(cache=True)
def _true_range(h: float, lo: float, prev_close: float) -> float:
    if np.isnan(prev_close):
        return h - lo
    return max(h - lo, abs(h - prev_close), abs(lo - prev_close))


@nb.njit(cache=True)
def _half_life(b: float, cap: float) -> float:
    if np.isnan(b):
        return np.nan
    if b >= 0.0:
        return cap
    if b <= -1.0:
        return 0.0
    return min(cap, -math.log(2.0) / math.log1p(b))


@nb.njit(cache=True)
def _beta_spread(buf, meta, win, sc, la, lb, out):  # type: ignore[no-untyped-def]
    if sc[S_ANCHORED] == 0.0:
        # Anchoring the logs keeps the running sums small (no cancellation); beta is unchanged.
        sc[S_AX], sc[S_AY], sc[S_ANCHORED] = lb, la, 1.0
    x = lb - sc[S_AX]
    y = la - sc[S_AY]
    ring_push(buf, meta, win, R_BX, x)
    ring_push(buf, meta, win, R_BY, y)
    ring_push(buf, meta, win, R_BXX, x * x)
    ring_push(buf, meta, win, R_BXY, x * y)
    vx = ring_cov(meta, win, R_BX, R_BX, R_BXX)
    beta = ring_cov(meta, win, R_BX, R_BY, R_BXY) / vx if vx > 0 else np.nan
    spread = np.nan
    if not np.isnan(beta):
        alpha = ring_mean(meta, win, R_BY) - beta * ring_mean(meta, win, R_BX)
        spread = y - beta * x - alpha
    out[F_BETA] = beta
    out[F_SPREAD] = spread
    ring_push(buf, meta, win, R_B, beta)
    ring_push(buf, meta, win, R_B2, beta * beta)
    out[F_BSTAB] = _std(meta, win, R_B, R_B2)


@nb.njit(cache=True)
def _zscore(buf, meta, win, ema, sc, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    ring_push(buf, meta, win, R_ZS, spread)
    ring_push(buf, meta, win, R_ZSS, spread * spread)
    sd = _std(meta, win, R_ZS, R_ZSS)
    z = (spread - ring_mean(meta, win, R_ZS)) / sd if not np.isnan(sd) else np.nan
    dz = _diff(z, sc[S_Z])
    out[F_Z] = z
    out[F_DZ] = dz
    out[F_ZEMA] = ema_push(ema, E_Z, p[P_A_Z], z)
    out[F_DZEMA] = ema_push(ema, E_DZ, p[P_A_DZ], abs(dz))
    sc[S_Z] = z


@nb.njit(cache=True)
def _spread_dynamics(buf, meta, win, ema, sc, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    prev = sc[S_SPREAD]
    ds = _diff(spread, prev)
    ring_push(buf, meta, win, R_ATRS, abs(ds))
    atr_s = ring_mean(meta, win, R_ATRS)
    ring_push(buf, meta, win, R_ATRL, atr_s)
    out[F_ATRS] = atr_s
    out[F_ATRR] = atr_s / ring_mean(meta, win, R_ATRL)
    ring_push(buf, meta, win, R_HX, prev)
    ring_push(buf, meta, win, R_HY, ds)
    ring_push(buf, meta, win, R_HXX, prev * prev)
    ring_push(buf, meta, win, R_HXY, prev * ds)
    vx = ring_cov(meta, win, R_HX, R_HX, R_HXX)
    b = ring_cov(meta, win, R_HX, R_HY, R_HXY) / vx if vx > 0 else np.nan
    out[F_HL] = _half_life(b, p[P_HL_CAP])
    fast = ema_push(ema, E_FAST, p[P_A_FAST], spread)
    slow = ema_push(ema, E_SLOW, p[P_A_SLOW], spread)
    out[F_EGAP] = fast - slow
    ring_push(buf, meta, win, R_SL, spread)
    out[F_SLOPE] = _slope(buf, meta, win, R_SL)
    gain = max(ds, 0.0) if not np.isnan(ds) else np.nan
    loss = max(-ds, 0.0) if not np.isnan(ds) else np.nan
    g = ema_push(ema, E_GAIN, p[P_A_RSI], gain)
    lo = ema_push(ema, E_LOSS, p[P_A_RSI], loss)
    out[F_RSI] = 100.0 if lo == 0.0 else 100.0 - 100.0 / (1.0 + g / lo)
    ring_push(buf, meta, win, R_DD, spread)
    out[F_DD] = _drawdown(buf, meta, win, R_DD, spread)
    sc[S_SPREAD] = spread


@nb.njit(cache=True)
def _legs(buf, meta, win, sc, la, lb, bar, out):  # type: ignore[no-untyped-def]
    ra = _diff(la, sc[S_LA])
    rb = _diff(lb, sc[S_LB])
    ring_push(buf, meta, win, R_RA, ra)
    ring_push(buf, meta, win, R_RB, rb)
    ring_push(buf, meta, win, R_RAA, ra * ra)
    ring_push(buf, meta, win, R_RBB, rb * rb)
    ring_push(buf, meta, win, R_RAB, ra * rb)
    va = ring_cov(meta, win, R_RA, R_RA, R_RAA)
    vb = ring_cov(meta, win, R_RB, R_RB, R_RBB)
    rho = np.nan
    if va > 0 and vb > 0:
        rho = ring_cov(meta, win, R_RA, R_RB, R_RAB) / math.sqrt(va * vb)
    out[F_RHO] = rho
    ring_push(buf, meta, win, R_RHO, rho)
    ring_push(buf, meta, win, R_RHO2, rho * rho)
    out[F_RHOVAR] = ring_cov(meta, win, R_RHO, R_RHO, R_RHO2)
    ring_push(buf, meta, win, R_TRA, _true_range(bar[0], bar[1], sc[S_CA]))
    ring_push(buf, meta, win, R_TRB, _true_range(bar[3], bar[4], sc[S_CB]))
    out[F_ATRA] = ring_mean(meta, win, R_TRA) / bar[2]
    out[F_ATRB] = ring_mean(meta, win, R_TRB) / bar[5]
    sc[S_LA], sc[S_LB], sc[S_CA], sc[S_CB] = la, lb, bar[2], bar[5]


@nb.njit(cache=True)
def pair_step(bar, buf, meta, win, ema, sc, p, out):  # type: ignore[no-untyped-def]
    """Update the state with one aligned bar and write every pair feature into ``out``.

    ``bar`` = (high_A, low_A, close_A, high_B, low_B, close_B).
    """
    la = math.log(bar[2])
    lb = math.log(bar[5])
    _beta_spread(buf, meta, win, sc, la, lb, out)
    _zscore(buf, meta, win, ema, sc, p, out)
    _spread_dynamics(buf, meta, win, ema, sc, p, out)
    _legs(buf, meta, win, sc, la, lb, bar, out)
    sc[S_BARS] += 1.0


@nb.njit(cache=True)
def pair_run(bars, buf, meta, win, ema, sc, p):  # type: ignore[no-untyped-def]
    """Run :func:`pair_step` over every row of ``bars``; return the feature matrix."""
    n = bars.shape[0]
    out = np.empty((n, N_PAIR))
    for t in range(n):
        pair_step(bars[t], buf, meta, win, ema, sc, p, out[t])
    return out


def empty_state(win: np.ndarray) -> dict[str, np.ndarray]:
    """A fresh state: ring buffers, ring metadata, EMAs and scalars."""
    sc = np.zeros(N_SCALARS)
    sc[[S_LA, S_LB, S_CA, S_CB, S_SPREAD, S_Z]] = np.nan
    return {
        "buf": np.full((N_RINGS, int(win.max())), np.nan),
        "meta": np.zeros((N_RINGS, R_META)),
        "ema": np.zeros((N_EMAS, 2)),
        "sc": sc,
    }
