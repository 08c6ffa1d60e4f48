"""Feature-drift statistics (pure, numpy): PSI on the training window's quantile bins and a
mean-shift statistic with a Newey-West (HAC) standard error.

Binning: ``psi_bins - 1`` interior edges at the training window's quantiles (duplicates
merged: a feature with few distinct values has fewer bins); bin ``i`` holds the values in
``(edge[i-1], edge[i]]``. A NaN is its own last bin, so a surge of missing values is drift
too. Each share is floored at ``epsilon`` and the shares renormalised to 1, so an empty bin
gives a large but finite PSI; on those shares PSI = Σ (a − e) ln(a / e), which is
``scipy.stats.entropy(a, e) + scipy.stats.entropy(e, a)`` (the symmetrised KL divergence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


def quantile_edges(train: Floats, n_bins: int) -> Floats:
    """The interior bin edges of one feature: its training quantiles at 1/n … (n−1)/n over
    the finite values, duplicates merged (empty for a feature with no finite value)."""
    finite = train[np.isfinite(train)]
    if finite.size == 0:
        return np.empty(0)
    qs = np.quantile(finite, np.arange(1, n_bins) / n_bins)
    return np.unique(qs)


def bin_index(x: Floats, edges: Floats) -> NDArray[np.int64]:
    """Each value's bin: 0 … len(edges) for finite values, len(edges) + 1 for NaN/±inf."""
    idx = np.searchsorted(edges, x, side="left").astype(np.int64)
    idx[~np.isfinite(x)] = len(edges) + 1
    return idx


def floored_shares(counts: Floats, epsilon: float) -> Floats:
    """Bin shares floored at ``epsilon`` and renormalised to sum to 1 (uniform for no counts)."""
    total = counts.sum(axis=-1, keepdims=True)
    shares = np.divide(counts, total, out=np.full_like(counts, 1.0 / counts.shape[-1]),
                       where=total > 0)  # fmt: skip
    shares = np.maximum(shares, epsilon)
    return np.asarray(shares / shares.sum(axis=-1, keepdims=True), dtype=np.float64)


def psi_from_shares(expected: Floats, actual: Floats) -> Floats:
    """PSI = Σ (a − e) ln(a / e) over the last axis (shares already floored)."""
    return np.asarray(np.sum((actual - expected) * np.log(actual / expected), axis=-1))


def newey_west_variance(x: Floats, lags: int | None = None) -> float:
    """The long-run variance of a series (Bartlett kernel; ``lags`` default
    floor(4 (n/100)^(2/9)), Newey-West 1994); NaNs dropped, 0 for fewer than 2 values."""
    v = x[np.isfinite(x)]
    n = v.size
    if n < 2:
        return 0.0
    d = v - v.mean()
    lag = int(4 * (n / 100) ** (2 / 9)) if lags is None else lags
    lag = min(lag, n - 1)
    total = float(d @ d) / n
    for k in range(1, lag + 1):
        total += 2 * (1 - k / (lag + 1)) * float(d[k:] @ d[:-k]) / n
    return max(total, 0.0)


@dataclass(frozen=True)
class Reference:
    """What the drift checks keep of the training window: per feature, its bin edges, its
    floored bin shares, its mean and long-run variance (for the mean-shift statistic)."""

    features: tuple[str, ...]
    edges: tuple[Floats, ...]
    shares: tuple[Floats, ...]
    mean: Floats
    long_run_var: Floats
    n_bars: int
    epsilon: float


def reference(train: Floats, features: tuple[str, ...], n_bins: int, epsilon: float) -> Reference:
    """The reference of a training window (rows: bars, columns: ``features``)."""
    if train.ndim != 2 or train.shape[1] != len(features):
        raise ValueError(f"training window of shape {train.shape} for {len(features)} features")
    edges, shares, means, lrv = [], [], [], []
    for j in range(train.shape[1]):
        col = train[:, j]
        e = quantile_edges(col, n_bins)
        counts = np.bincount(bin_index(col, e), minlength=len(e) + 2).astype(np.float64)
        edges.append(e)
        shares.append(floored_shares(counts, epsilon))
        finite = col[np.isfinite(col)]
        means.append(float(finite.mean()) if finite.size else math.nan)
        lrv.append(newey_west_variance(col))
    return Reference(features, tuple(edges), tuple(shares), np.array(means), np.array(lrv),
                     int(train.shape[0]), epsilon)  # fmt: skip


def psi_values(ref: Reference, live: Floats) -> Floats:
    """PSI of each feature of a live window (rows: bars) against the reference."""
    out = np.empty(len(ref.features))
    for j, (e, expected) in enumerate(zip(ref.edges, ref.shares, strict=True)):
        counts = np.bincount(bin_index(live[:, j], e), minlength=len(e) + 2).astype(np.float64)
        out[j] = float(psi_from_shares(expected, floored_shares(counts, ref.epsilon)))
    return out


def mean_shift_values(ref: Reference, live: Floats) -> Floats:
    """|mean(live) − mean(train)| / sqrt(LRV (1/n_live + 1/n_train)) per feature, on finite
    values. A constant training feature (LRV 0) gives 0 for an equal live mean, inf for another;
    a live column without a finite value gives NaN (no verdict)."""
    finite = np.isfinite(live)
    n = finite.sum(axis=0)
    sums = np.where(finite, live, 0.0).sum(axis=0)
    means = np.divide(sums, n, out=np.full(live.shape[1], np.nan), where=n > 0)
    train_n = np.isfinite(ref.mean) * float(ref.n_bars)
    return shift_statistic(ref.mean, ref.long_run_var, train_n, means, n.astype(np.float64))


def shift_statistic(
    train_mean: Floats, long_run_var: Floats, train_n: Floats, live_mean: Floats,
    live_n: Floats,
) -> Floats:  # fmt: skip
    """The mean-shift statistic from means and counts (shared with the null draws)."""
    diff = np.abs(live_mean - train_mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(long_run_var * (1.0 / live_n + 1.0 / train_n))
        stat = diff / se
    tiny = 1e-12 * np.maximum(1.0, np.abs(train_mean))
    stat = np.where(se > 0, stat, np.where(diff <= tiny, 0.0, np.inf))
    ok = np.isfinite(live_mean) & np.isfinite(train_mean)
    return np.asarray(np.where(ok, stat, np.nan), dtype=np.float64)
