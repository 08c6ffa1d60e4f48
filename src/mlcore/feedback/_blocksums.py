"""Stationary-bootstrap windows scored from prefix sums: a window's per-feature sums, finite
counts and bin counts are the sums over its blocks of (prefix[end] − prefix[start]) on the
training series laid twice end to end (a block wraps around at most once: lengths are capped
at the series length). The same resampling as ``stationary_indices`` (geometric block lengths
of mean ``block``, uniform starts), at a cost per window proportional to its number of blocks
instead of its number of bars — what makes the second-level (calibration) bootstrap
affordable."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mlcore.feedback._drift import Floats, Reference, bin_index, floored_shares


@dataclass(frozen=True)
class Prefix:
    """Prefix sums of a training window laid twice (rows 0 … 2n)."""

    n_bars: int
    values: Floats  # (2n + 1, features): sums of the finite values
    finite: NDArray[np.int64]  # (2n + 1, features): finite counts
    bins: tuple[NDArray[np.int64], ...]  # per feature: (2n + 1, bins) bin counts


def prefix(train: Floats, ref: Reference) -> Prefix:
    """The prefix sums of ``train`` on ``ref``'s bin edges."""
    n = train.shape[0]
    twice = np.concatenate([train, train])
    ok = np.isfinite(twice)
    zero = np.zeros((1, train.shape[1]))
    values = np.concatenate([zero, np.cumsum(np.where(ok, twice, 0.0), axis=0)])
    finite = np.concatenate([zero.astype(np.int64), np.cumsum(ok, axis=0, dtype=np.int64)])
    bins = []
    for j, e in enumerate(ref.edges):
        onehot = np.zeros((2 * n, len(e) + 2), dtype=np.int64)
        onehot[np.arange(2 * n), bin_index(twice[:, j], e)] = 1
        bins.append(np.concatenate([np.zeros((1, len(e) + 2), dtype=np.int64),
                                    np.cumsum(onehot, axis=0)]))  # fmt: skip
    return Prefix(n, values, finite, tuple(bins))


def _blocks(
    rng: np.random.Generator, n: int, length: int, draws: int, block: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per draw: block starts and lengths (0 for unused slots) covering ``length`` bars."""
    expected = length / block
    k = int(min(length, math.ceil(expected + 8 * math.sqrt(expected) + 16)))
    starts = rng.integers(0, n, size=(draws, k))
    lens = rng.geometric(1.0 / block, size=(draws, k)).astype(np.int64)
    ends = np.minimum(np.cumsum(lens, axis=1), length)
    used = np.diff(ends, axis=1, prepend=0)
    used[:, -1] += length - ends[:, -1]  # a rare shortfall: the last block fills it
    return starts, np.minimum(used, n)


@dataclass(frozen=True)
class Scored:
    """Windows' bin shares (per feature: draws × bins), means and finite counts (draws ×
    features)."""

    shares: list[Floats]
    mean: Floats
    count: Floats


def scored_windows(
    pre: Prefix, rng: np.random.Generator, length: int, draws: int, block: int, epsilon: float
) -> Scored:
    """``draws`` stationary-bootstrap windows of ``length`` bars, scored."""
    starts, lens = _blocks(rng, pre.n_bars, length, draws, block)
    ends = starts + lens
    sums = (pre.values[ends] - pre.values[starts]).sum(axis=1)
    count = (pre.finite[ends] - pre.finite[starts]).sum(axis=1).astype(np.float64)
    mean = np.divide(sums, count, out=np.full(count.shape, np.nan), where=count > 0)
    shares = [floored_shares((b[ends] - b[starts]).sum(axis=1).astype(np.float64), epsilon)
              for b in pre.bins]  # fmt: skip
    return Scored(shares, mean, count)
