"""Pair features: the streaming step and the batch pass, both built on the formulas of
:mod:`mlcore.features._formulas` and the window primitives of :mod:`mlcore.features._rolling`.

The two engines feed the same formulas with window sums computed with the same arithmetic, so
they agree on every bar; a feature at bar t depends on bars <= t only.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from mlcore.config import PairFeatureWindows
from mlcore.features import _formulas as fm
from mlcore.features._rolling import (
    R_META,
    ema_array,
    ema_push,
    ring_push,
    ring_window,
    rolling_extremes,
    rolling_sum,
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
    beta, spread = fm.ols(x, y, sx, sy, sxx, sxy, wa[W_BETA])
    out[F_BETA] = beta
    out[F_SPREAD] = spread
    sb = ring_push(buf, meta, sums, win, R_B, beta)
    sbb = ring_push(buf, meta, sums, win, R_B2, beta * beta)
    out[F_BSTAB] = fm.std(sb, sbb, wa[W_BS])


@nb.njit(cache=True)
def _stream_z(buf, meta, sums, win, wa, ema, sc, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    s = ring_push(buf, meta, sums, win, R_ZS, spread)
    ss = ring_push(buf, meta, sums, win, R_ZSS, spread * spread)
    z = fm.zscore(spread, s, ss, wa[W_Z])
    dz = fm.diff(z, sc[S_Z])
    out[F_Z] = z
    out[F_DZ] = dz
    out[F_ZEMA] = ema_push(ema, E_Z, p[P_A_Z], z)
    out[F_DZEMA] = ema_push(ema, E_DZ, p[P_A_DZ], abs(dz))
    sc[S_Z] = z


@nb.njit(cache=True)
def _stream_dynamics(buf, meta, sums, win, wa, ema, sc, p, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    prev = sc[S_SPREAD]
    ds = fm.diff(spread, prev)
    atr_s = ring_push(buf, meta, sums, win, R_ATRS, abs(ds)) / wa[W_ATR]
    out[F_ATRS] = atr_s
    out[F_ATRR] = atr_s / (ring_push(buf, meta, sums, win, R_ATRL, atr_s) / wa[W_ATRL])
    hx = ring_push(buf, meta, sums, win, R_HX, prev)
    hy = ring_push(buf, meta, sums, win, R_HY, ds)
    hxx = ring_push(buf, meta, sums, win, R_HXX, prev * prev)
    hxy = ring_push(buf, meta, sums, win, R_HXY, prev * ds)
    out[F_HL] = fm.half_life(hx, hy, hxx, hxy, wa[W_HL], p[P_HL_CAP])
    fast = ema_push(ema, E_FAST, p[P_A_FAST], spread)
    out[F_EGAP] = fast - ema_push(ema, E_SLOW, p[P_A_SLOW], spread)
    gain = max(ds, 0.0) if not np.isnan(ds) else np.nan
    loss = max(-ds, 0.0) if not np.isnan(ds) else np.nan
    g = ema_push(ema, E_GAIN, p[P_A_RSI], gain)
    out[F_RSI] = fm.rsi(g, ema_push(ema, E_LOSS, p[P_A_RSI], loss))
    sc[S_SPREAD] = spread


@nb.njit(cache=True)
def _stream_windows(buf, meta, sums, win, wa, tmp, out):  # type: ignore[no-untyped-def]
    spread = out[F_SPREAD]
    ring_push(buf, meta, sums, win, R_SL, spread)
    w_sl = wa[W_SL]
    if ring_window(buf, meta, win, R_SL, tmp[:w_sl]):
        out[F_SLOPE] = fm.slope(tmp[:w_sl])
    else:
        out[F_SLOPE] = np.nan
    ring_push(buf, meta, sums, win, R_DD, spread)
    w_dd = wa[W_DD]
    if ring_window(buf, meta, win, R_DD, tmp[:w_dd]):
        out[F_DD] = fm.drawdown(tmp[:w_dd].max(), tmp[:w_dd].min(), spread)
    else:
        out[F_DD] = np.nan


@nb.njit(cache=True)
def _stream_legs(buf, meta, sums, win, wa, sc, la, lb, bar, out):  # type: ignore[no-untyped-def]
    ra = fm.diff(la, sc[S_LA])
    rb = fm.diff(lb, sc[S_LB])
    sa = ring_push(buf, meta, sums, win, R_RA, ra)
    sb = ring_push(buf, meta, sums, win, R_RB, rb)
    saa = ring_push(buf, meta, sums, win, R_RAA, ra * ra)
    sbb = ring_push(buf, meta, sums, win, R_RBB, rb * rb)
    sab = ring_push(buf, meta, sums, win, R_RAB, ra * rb)
    rho = fm.corr(sa, sb, saa, sbb, sab, wa[W_RHO])
    out[F_RHO] = rho
    s1 = ring_push(buf, meta, sums, win, R_RHO, rho)
    s2 = ring_push(buf, meta, sums, win, R_RHO2, rho * rho)
    out[F_RHOVAR] = fm.cov(s1, s1, s2, wa[W_RV])
    tra = ring_push(buf, meta, sums, win, R_TRA, fm.true_range(bar[0], bar[1], sc[S_CA]))
    trb = ring_push(buf, meta, sums, win, R_TRB, fm.true_range(bar[3], bar[4], sc[S_CB]))
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


@nb.njit(cache=True)
def _batch_spread(la, lb, wa, out):  # type: ignore[no-untyped-def]
    x = lb - lb[0]
    y = la - la[0]
    w = wa[W_BETA]
    sx, sy = rolling_sum(x, w), rolling_sum(y, w)
    sxx, sxy = rolling_sum(x * x, w), rolling_sum(x * y, w)
    for t in range(la.shape[0]):
        out[t, F_BETA], out[t, F_SPREAD] = fm.ols(x[t], y[t], sx[t], sy[t], sxx[t], sxy[t], w)
    beta = out[:, F_BETA].copy()
    sb, sbb = rolling_sum(beta, wa[W_BS]), rolling_sum(beta * beta, wa[W_BS])
    for t in range(la.shape[0]):
        out[t, F_BSTAB] = fm.std(sb[t], sbb[t], wa[W_BS])


@nb.njit(cache=True)
def _batch_z(wa, p, out):  # type: ignore[no-untyped-def]
    spread = out[:, F_SPREAD].copy()
    n = spread.shape[0]
    s, ss = rolling_sum(spread, wa[W_Z]), rolling_sum(spread * spread, wa[W_Z])
    prev = np.nan
    for t in range(n):
        z = fm.zscore(spread[t], s[t], ss[t], wa[W_Z])
        out[t, F_Z] = z
        out[t, F_DZ] = fm.diff(z, prev)
        prev = z
    out[:, F_ZEMA] = ema_array(out[:, F_Z].copy(), p[P_A_Z])
    out[:, F_DZEMA] = ema_array(np.abs(out[:, F_DZ]), p[P_A_DZ])


@nb.njit(cache=True)
def _batch_dynamics(wa, p, out):  # type: ignore[no-untyped-def]
    spread = out[:, F_SPREAD].copy()
    n = spread.shape[0]
    prev = np.empty(n)
    prev[0] = np.nan
    prev[1:] = spread[:-1]
    ds = spread - prev
    atr_s = rolling_sum(np.abs(ds), wa[W_ATR]) / wa[W_ATR]
    out[:, F_ATRS] = atr_s
    out[:, F_ATRR] = atr_s / (rolling_sum(atr_s, wa[W_ATRL]) / wa[W_ATRL])
    w = wa[W_HL]
    hx, hy = rolling_sum(prev, w), rolling_sum(ds, w)
    hxx, hxy = rolling_sum(prev * prev, w), rolling_sum(prev * ds, w)
    for t in range(n):
        out[t, F_HL] = fm.half_life(hx[t], hy[t], hxx[t], hxy[t], w, p[P_HL_CAP])
    out[:, F_EGAP] = ema_array(spread, p[P_A_FAST]) - ema_array(spread, p[P_A_SLOW])
    gain = np.where(np.isnan(ds), np.nan, np.maximum(ds, 0.0))
    loss = np.where(np.isnan(ds), np.nan, np.maximum(-ds, 0.0))
    g, lo = ema_array(gain, p[P_A_RSI]), ema_array(loss, p[P_A_RSI])
    for t in range(n):
        out[t, F_RSI] = fm.rsi(g[t], lo[t])


@nb.njit(cache=True)
def _batch_windows(wa, out):  # type: ignore[no-untyped-def]
    spread = out[:, F_SPREAD].copy()
    w_sl = wa[W_SL]
    full = rolling_sum(spread, w_sl)
    for t in range(spread.shape[0]):
        out[t, F_SLOPE] = (
            fm.slope(spread[t - w_sl + 1 : t + 1]) if not np.isnan(full[t]) else np.nan
        )
    hi, lo = rolling_extremes(spread, wa[W_DD])
    for t in range(spread.shape[0]):
        out[t, F_DD] = fm.drawdown(hi[t], lo[t], spread[t])


@nb.njit(cache=True)
def _batch_legs(bars, la, lb, wa, out):  # type: ignore[no-untyped-def]
    n = la.shape[0]
    ra = np.empty(n)
    rb = np.empty(n)
    ra[0] = rb[0] = np.nan
    ra[1:] = la[1:] - la[:-1]
    rb[1:] = lb[1:] - lb[:-1]
    w = wa[W_RHO]
    sa, sb = rolling_sum(ra, w), rolling_sum(rb, w)
    saa, sbb, sab = rolling_sum(ra * ra, w), rolling_sum(rb * rb, w), rolling_sum(ra * rb, w)
    for t in range(n):
        out[t, F_RHO] = fm.corr(sa[t], sb[t], saa[t], sbb[t], sab[t], w)
    rho = out[:, F_RHO].copy()
    s1, s2 = rolling_sum(rho, wa[W_RV]), rolling_sum(rho * rho, wa[W_RV])
    for t in range(n):
        out[t, F_RHOVAR] = fm.cov(s1[t], s1[t], s2[t], wa[W_RV])
    tra = np.empty(n)
    trb = np.empty(n)
    for t in range(n):
        pa = bars[t - 1, 2] if t else np.nan
        pb = bars[t - 1, 5] if t else np.nan
        tra[t] = fm.true_range(bars[t, 0], bars[t, 1], pa)
        trb[t] = fm.true_range(bars[t, 3], bars[t, 4], pb)
    out[:, F_ATRA] = rolling_sum(tra, wa[W_ATR]) / wa[W_ATR] / bars[:, 2]
    out[:, F_ATRB] = rolling_sum(trb, wa[W_ATR]) / wa[W_ATR] / bars[:, 5]


@nb.njit(cache=True)
def pair_batch(bars, wa, p):  # type: ignore[no-untyped-def]
    """Every pair feature for every row of ``bars`` (n x 6), from a fresh state."""
    n = bars.shape[0]
    out = np.empty((n, N_PAIR))
    la = np.log(bars[:, 2])
    lb = np.log(bars[:, 5])
    _batch_spread(la, lb, wa, out)
    _batch_z(wa, p, out)
    _batch_dynamics(wa, p, out)
    _batch_windows(wa, out)
    _batch_legs(bars, la, lb, wa, out)
    return out


@nb.njit(cache=True)
def pair_stream_run(bars, buf, meta, sums, win, wa, ema, sc, p, tmp):  # type: ignore[no-untyped-def]
    """Run the streaming step over every row of ``bars`` (warming a worker's state)."""
    out = np.empty((bars.shape[0], N_PAIR))
    for t in range(bars.shape[0]):
        pair_step(bars[t], buf, meta, sums, win, wa, ema, sc, p, tmp, out[t])
    return out
