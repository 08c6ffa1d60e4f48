"""Purged grouped K-fold with embargo (López de Prado, AFML §7.4, snippet 7.1).

Samples are ordered in time and carry a label interval [t0, t1] in bars: t0 is the sample's bar
(``groups``, default its position) and t1 the bar its label ends (``label_end``, default
t0 + ``purge_bars``: a fixed horizon). The distinct bars are cut into ``n_folds`` contiguous
blocks of equally many bars with samples (samples of one bar stay together), each spanning at
least ``min_block_bars`` bars of time; each split tests ``n_test_folds`` of them (all
combinations, so 1 is K-fold and more is combinatorial purged CV). For each test block, with span
[first t0, last t1] of its labels, a training sample is purged when its own label interval
touches that span (inclusive), and embargoed when it starts within ``embargo_bars`` after the
span: the embargo is added to the purge.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike


class PurgedGroupedKFold:
    """Purged (combinatorial) K-fold over contiguous blocks of bars, with an embargo.

    Defaults are the spec's: K = 5, purge = 24 bars, embargo = 24 bars, blocks of at least
    240 bars.
    """

    def __init__(
        self,
        n_folds: int = 5,
        n_test_folds: int = 1,
        purge_bars: int = 24,
        embargo_bars: int = 24,
        min_block_bars: int = 240,
    ) -> None:
        self.n_folds = n_folds
        self.n_test_folds = n_test_folds
        self.purge_bars = purge_bars
        self.embargo_bars = embargo_bars
        self.min_block_bars = min_block_bars

    def _check_params(self) -> None:
        for name in ("n_folds", "n_test_folds", "purge_bars", "embargo_bars", "min_block_bars"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if not 1 <= self.n_test_folds < self.n_folds:
            raise ValueError(
                f"n_test_folds must be in [1, n_folds - 1] = [1, {self.n_folds - 1}], "
                f"got {self.n_test_folds}"
            )
        if self.purge_bars < 0 or self.embargo_bars < 0:
            raise ValueError(
                f"purge_bars and embargo_bars must be >= 0, got {self.purge_bars} and "
                f"{self.embargo_bars}"
            )
        need = self.purge_bars + self.embargo_bars + 1
        if self.min_block_bars < need:
            raise ValueError(
                f"min_block_bars={self.min_block_bars} is smaller than purge + embargo + 1 = "
                f"{need}: a block must outlast the bars removed around it"
            )

    def get_n_splits(
        self,
        X: ArrayLike | None = None,
        y: ArrayLike | None = None,
        groups: ArrayLike | None = None,
    ) -> int:
        """Number of splits: every choice of ``n_test_folds`` test blocks among ``n_folds``."""
        self._check_params()
        return math.comb(self.n_folds, self.n_test_folds)

    def split(
        self,
        X: ArrayLike,
        y: ArrayLike | None = None,
        groups: ArrayLike | None = None,
        label_end: ArrayLike | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train indices, test indices) for each split.

        ``groups``: the bar of each sample (non-decreasing integers; samples of one bar stay in
        one block); default ``arange(n)``. ``label_end``: the bar each sample's label ends
        (>= its own bar); default bar + ``purge_bars``.
        """
        self._check_params()
        t0, t1 = self._intervals(X, groups, label_end)
        bars = np.unique(t0)
        block_bars = self._blocks(bars)
        # Block of each sample: by its bar's position among the distinct bars.
        block_of = np.searchsorted(block_bars[1:], t0, side="right")
        for test_blocks in itertools.combinations(range(self.n_folds), self.n_test_folds):
            test = np.isin(block_of, test_blocks)
            train = ~test
            for b in test_blocks:
                in_block = block_of == b
                lo, hi = t0[in_block].min(), t1[in_block].max()
                touches = (t0 <= hi) & (t1 >= lo)
                embargoed = (t0 > hi) & (t0 <= hi + self.embargo_bars)
                train &= ~(touches | embargoed)
            yield np.flatnonzero(train), np.flatnonzero(test)

    def _intervals(
        self, X: ArrayLike, groups: ArrayLike | None, label_end: ArrayLike | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(X)  # type: ignore[arg-type]
        t0 = np.arange(n, dtype=np.int64) if groups is None else _ints(groups, "groups", n)
        if np.any(np.diff(t0) < 0):
            first = int(np.flatnonzero(np.diff(t0) < 0)[0]) + 1
            raise ValueError(
                f"groups must be non-decreasing (bars in time order); sample {first} goes back"
            )
        t1 = t0 + self.purge_bars if label_end is None else _ints(label_end, "label_end", n)
        if np.any(t1 < t0):
            first = int(np.flatnonzero(t1 < t0)[0])
            raise ValueError(
                f"label_end must not precede the sample's bar: sample {first} has bar "
                f"{t0[first]} and label_end {t1[first]}"
            )
        return t0, t1

    def _blocks(self, bars: np.ndarray) -> np.ndarray:
        """First bar of each block: the first n_folds - 1 blocks hold n // n_folds of the
        distinct bars each and the last the rest; every block must span min_block_bars bars."""
        size = len(bars) // self.n_folds
        if size == 0:
            raise ValueError(f"{len(bars)} distinct bars cannot make {self.n_folds} blocks")
        starts = np.arange(self.n_folds) * size
        stops = np.r_[starts[1:], len(bars)] - 1
        spans = bars[stops] - bars[starts] + 1
        short = int(np.argmin(spans))
        if spans[short] < self.min_block_bars:
            raise ValueError(
                f"block {short} of {self.n_folds} spans {spans[short]} bars "
                f"({bars[starts[short]]}..{bars[stops[short]]}); each block needs at least "
                f"min_block_bars={self.min_block_bars} (and more than purge + embargo = "
                f"{self.purge_bars + self.embargo_bars})"
            )
        return bars[starts]


def _ints(values: ArrayLike, name: str, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have one value per sample ({n}), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer bar numbers, got dtype {arr.dtype}")
    return arr.astype(np.int64)
