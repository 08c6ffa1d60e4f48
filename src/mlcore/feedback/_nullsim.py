"""The drift checks' null distribution: stationary-bootstrap windows of the live size drawn
from the training window (blocks keep the autocorrelation; rows are drawn whole, so the
features' cross-correlation is kept too), each scored like a live window. Thresholds are the
(1 − α) quantiles; p-values the empirical tail, (1 + #{null ≥ observed}) / (draws + 1); Holm
across the (feature, check) tests. Deterministic given the seed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from mlcore.feedback._blocksums import prefix, scored_windows
from mlcore.feedback._drift import Floats, Reference, psi_from_shares, shift_statistic


class BlockRule(StrEnum):
    """How the bootstrap's mean block length is chosen."""

    POLITIS_WHITE = "politis_white"
    CUBE_ROOT = "cube_root"


def _flat_top(t: Floats) -> Floats:
    a = np.abs(t)
    return np.where(a <= 0.5, 1.0, np.where(a <= 1.0, 2.0 * (1.0 - a), 0.0))


def politis_white_block(x: Floats) -> float:
    """The stationary bootstrap's optimal mean block length of one series (Politis and White
    2004, as corrected by Patton, Politis and White 2009); NaNs dropped, 1 for short or
    constant series."""
    v = x[np.isfinite(x)]
    n = v.size
    if n < 10:
        return 1.0
    d = v - v.mean()
    var0 = float(d @ d) / n
    if var0 <= 0:
        return 1.0
    kn = max(5, int(math.sqrt(math.log10(n))))
    m_max = min(math.ceil(math.sqrt(n)) + kn, n - 1)
    acov = np.array([float(d[k:] @ d[: n - k]) / n for k in range(m_max + 1)])
    rho = acov / var0
    bound = 2.0 * math.sqrt(math.log10(n) / n)
    m_hat = m_max
    for m in range(1, m_max - kn + 1):
        if np.all(np.abs(rho[m + 1 : m + kn + 1]) < bound):
            m_hat = m
            break
    big_m = min(2 * m_hat, m_max)
    k = np.arange(1, big_m + 1)
    lam = _flat_top(k / big_m) if big_m > 0 else np.empty(0)
    g = 2.0 * float(np.sum(lam * k * acov[1 : big_m + 1]))
    g0 = var0 + 2.0 * float(np.sum(lam * acov[1 : big_m + 1]))
    d_sb = 2.0 * g0**2
    if d_sb <= 0 or g == 0:
        return 1.0
    return float((2.0 * g**2 / d_sb) ** (1 / 3) * n ** (1 / 3))


def block_length(train: Floats, rule: BlockRule, cap: int) -> int:
    """The mean block length for a training window (rows: bars): Politis-White per feature,
    the longest (the most persistent feature rules), or n^(1/3); within [1, cap]."""
    n = train.shape[0]
    if rule is BlockRule.CUBE_ROOT:
        b = n ** (1 / 3)
    else:
        b = max((politis_white_block(train[:, j]) for j in range(train.shape[1])), default=1.0)
    return int(min(max(1, round(b)), cap, max(1, n)))


def stationary_indices(
    rng: np.random.Generator, n: int, length: int, draws: int, block: int
) -> NDArray[np.int64]:
    """``draws`` rows of ``length`` indices into a series of ``n``: blocks of geometric length
    (mean ``block``) from uniform starts, wrapping around (Politis and Romano 1994)."""
    t = np.arange(length)
    starts = rng.integers(0, n, size=(draws, length))
    new = rng.random((draws, length)) < 1.0 / block
    new[:, 0] = True
    seg = np.maximum.accumulate(np.where(new, t, 0), axis=1)
    first = np.take_along_axis(starts, seg, axis=1)
    return np.asarray((first + (t - seg)) % n, dtype=np.int64)


@dataclass(frozen=True)
class NullTable:
    """The null distribution of both statistics at one live window size: sorted per feature
    (rows: draws, columns: features)."""

    window_bars: int
    block_bars: int
    psi: Floats
    shift: Floats
    psi_scale: Floats  # per feature: the calibration's factor (1: not calibrated)
    shift_scale: Floats

    @property
    def draws(self) -> int:
        """How many bootstrap windows were drawn."""
        return int(self.psi.shape[0])

    def thresholds(self, alpha: float) -> tuple[Floats, Floats]:
        """The (1 − alpha) quantile of each feature's PSI and mean-shift statistic."""
        q = 1.0 - alpha
        return (np.quantile(self.psi, q, axis=0, method="higher"),
                np.quantile(self.shift, q, axis=0, method="higher"))  # fmt: skip

    def p_values(self, psi: Floats, shift: Floats) -> tuple[Floats, Floats]:
        """Empirical upper-tail p-values of observed statistics (NaN stays NaN)."""
        return _tail(self.psi, psi), _tail(self.shift, shift)


def _tail(null_sorted: Floats, observed: Floats) -> Floats:
    b = null_sorted.shape[0]
    out = np.full(observed.shape, np.nan)
    for j, obs in enumerate(observed):
        if np.isfinite(obs) or obs == np.inf:
            at_least = b - np.searchsorted(null_sorted[:, j], obs, side="left")
            out[j] = (1.0 + at_least) / (b + 1.0)
    return out


def null_table(
    train: Floats, ref: Reference, window_bars: int, block_bars: int, draws: int, seed: int
) -> NullTable:
    """Score ``draws`` bootstrap windows of ``window_bars`` bars from ``train`` (the window
    ``ref`` was made from), each against its own bootstrap copy of the training window: a live
    window is independent of the training window, whose bin shares and mean have their own
    sampling error (a window drawn from the training bars and compared with those same bars
    would miss it, and large windows would alarm too often). The bin edges stay the training
    window's. Windows are scored from prefix sums, in chunks (bounded memory)."""
    n, f = train.shape
    if n == 0 or window_bars < 1:
        raise ValueError(
            f"no null simulation from {n} training bars for a {window_bars}-bar window"
        )
    rng = np.random.default_rng([seed, window_bars, block_bars])
    pre = prefix(train, ref)
    psi = np.empty((draws, f))
    shift = np.empty((draws, f))
    width = f * (max(len(e) for e in ref.edges) + 3) if f else 1
    blocks = (window_bars + n) / block_bars + 16 * math.sqrt(n / block_bars) + 32
    chunk = max(1, int(4_000_000 // (blocks * width)))
    for lo in range(0, draws, chunk):
        c = min(chunk, draws - lo)
        live = scored_windows(pre, rng, window_bars, c, block_bars, ref.epsilon)
        base = scored_windows(pre, rng, n, c, block_bars, ref.epsilon)
        for j in range(f):
            psi[lo : lo + c, j] = psi_from_shares(base.shares[j], live.shares[j])
        shift[lo : lo + c] = shift_statistic(base.mean, ref.long_run_var, base.count,
                                             live.mean, live.count)  # fmt: skip
    return NullTable(window_bars, block_bars, np.sort(psi, axis=0), np.sort(shift, axis=0),
                     np.ones(f), np.ones(f))  # fmt: skip


def scaled(table: NullTable, psi_scale: Floats, shift_scale: Floats) -> NullTable:
    """The null distributions multiplied, per feature, by the calibration's factors."""
    return NullTable(table.window_bars, table.block_bars, table.psi * psi_scale,
                     table.shift * shift_scale, psi_scale, shift_scale)  # fmt: skip


def holm(p_values: Floats, alpha: float) -> NDArray[np.bool_]:
    """Holm's step-down rejections at family-wise level ``alpha`` (a NaN p-value: no test,
    never rejected, not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    reject = np.zeros(p.shape, dtype=bool)
    tested = np.flatnonzero(np.isfinite(p))
    m = tested.size
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        if p[i] > alpha / (m - rank):
            break
        reject[i] = True
    return reject


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift statistics, thresholds, p-values and Holm verdicts."""

    feature: str
    psi: float
    psi_threshold: float
    psi_p: float
    psi_drifted: bool
    shift: float
    shift_threshold: float
    shift_p: float
    shift_drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """A live window's drift check against the training window."""

    window_bars: int
    block_bars: int
    draws: int
    alpha: float
    features: tuple[FeatureDrift, ...]

    @property
    def drifted(self) -> tuple[str, ...]:
        """The features Holm rejects on either check (family-wise level ``alpha``)."""
        return tuple(f.feature for f in self.features if f.psi_drifted or f.shift_drifted)


def assess_drift(ref: Reference, table: NullTable, live: Floats, alpha: float) -> DriftReport:
    """Score a live window of ``table.window_bars`` bars and decide, by Holm over all
    (feature, check) tests at ``alpha``, which features drifted."""
    from mlcore.feedback._drift import mean_shift_values, psi_values

    if live.shape != (table.window_bars, len(ref.features)):
        raise ValueError(f"live window of shape {live.shape}, the null table is for "
                         f"({table.window_bars}, {len(ref.features)})")  # fmt: skip
    psi, shift = psi_values(ref, live), mean_shift_values(ref, live)
    psi_q, shift_q = table.thresholds(alpha)
    psi_p, shift_p = table.p_values(psi, shift)
    reject = holm(np.concatenate([psi_p, shift_p]), alpha)
    f = len(ref.features)
    rows = tuple(
        FeatureDrift(name, float(psi[j]), float(psi_q[j]), float(psi_p[j]), bool(reject[j]),
                     float(shift[j]), float(shift_q[j]), float(shift_p[j]), bool(reject[f + j]))
        for j, name in enumerate(ref.features)
    )  # fmt: skip
    return DriftReport(table.window_bars, table.block_bars, table.draws, alpha, rows)


def min_draws(n_tests: int, alpha: float) -> int:
    """The fewest draws with which Holm can reject at all: the smallest p-value, 1/(B+1),
    must be at most alpha / n_tests."""
    return max(1, math.ceil(n_tests / alpha) - 1)
