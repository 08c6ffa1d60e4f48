"""Walk-forward validation in monthly steps with a minimum training history.

Each test window is one calendar month (UTC): from the first sample at or after the month's
start to the first sample of the next month (a last, incomplete month is not tested). A month
is tested once the data reach back at least ``min_train_days`` before its start. Training is
every earlier sample (an expanding window) whose label ends before the test window starts:
with fixed-horizon labels (the default, ``purge_bars`` bars) the last ``purge_bars`` samples
before the test window are purged. Positions count samples, so this assumes one sample per bar
and labels no longer than ``purge_bars`` (as skfolio's ``WalkForward``); for pooled or sparse
samples use :class:`PurgedGroupedKFold`, which purges by label intervals.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


class MonthlyWalkForward:
    """Expanding-window walk-forward, one month per test window (spec: 360 days minimum)."""

    def __init__(self, min_train_days: int = 360, purge_bars: int = 24) -> None:
        self.min_train_days = min_train_days
        self.purge_bars = purge_bars

    def _times(self, X: object) -> pd.DatetimeIndex:
        index = getattr(X, "index", None)
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError(
                "X must be a pandas object indexed by bar time (a DatetimeIndex), got "
                f"{type(X).__name__}"
                + ("" if index is None else f" indexed by {type(index).__name__}")
            )
        if index.tz is None:
            raise ValueError("X's DatetimeIndex must be timezone-aware (UTC)")
        if not index.is_monotonic_increasing:
            raise ValueError("X's DatetimeIndex must be in time order")
        if self.min_train_days < 1 or self.purge_bars < 0:
            raise ValueError(
                f"min_train_days must be >= 1 and purge_bars >= 0, got {self.min_train_days} "
                f"and {self.purge_bars}"
            )
        return index.tz_convert("UTC")

    def bounds(self, X: object) -> list[tuple[int, int, int]]:
        """(train stop, test start, test stop) positions of each split, stops exclusive."""
        ts = self._times(X)
        first_month = ts[0].normalize().replace(day=1)
        month_starts = pd.date_range(first_month, ts[-1], freq="MS")
        month_starts = month_starts[month_starts >= ts[0]]
        starts = np.searchsorted(ts.asi8, month_starts.as_unit(ts.unit).asi8, side="left")
        lookback = pd.Timedelta(days=self.min_train_days)
        out: list[tuple[int, int, int]] = []
        for k in range(len(month_starts) - 1):
            lo, hi = int(starts[k]), int(starts[k + 1])
            if hi <= lo or ts[0] > month_starts[k] - lookback:
                continue
            train_stop = lo - self.purge_bars
            if train_stop <= 0:
                raise ValueError(
                    f"the test month starting {month_starts[k].date()} leaves no training "
                    f"sample after purging {self.purge_bars} bars"
                )
            out.append((train_stop, lo, hi))
        return out

    def get_n_splits(
        self, X: object = None, y: ArrayLike | None = None, groups: ArrayLike | None = None
    ) -> int:
        """Number of tested months."""
        if X is None:
            raise ValueError("MonthlyWalkForward needs X (its time index) to count splits")
        return len(self.bounds(X))

    def split(
        self, X: object, y: ArrayLike | None = None, groups: ArrayLike | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train indices, test indices), one test month per split."""
        for train_stop, lo, hi in self.bounds(X):
            yield np.arange(train_stop), np.arange(lo, hi)
