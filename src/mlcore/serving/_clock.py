"""Time as a worker sees it: the wall clock live; in a replay, the replayed bars' own time."""

from __future__ import annotations

import time


class WallClock:
    """UTC now, in ns."""

    def now_ns(self, close_ns: int) -> int:
        """Now (the bar's close is not used)."""
        return time.time_ns()


class ReplayClock:
    """Replayed history: the first bar's close is "now" when it arrives, and time then runs
    with the wall clock, so a worker that falls behind a replay still sees its bars go stale."""

    def __init__(self) -> None:
        self._offset: int | None = None

    def now_ns(self, close_ns: int) -> int:
        """Now on the replay's time line."""
        wall = time.time_ns()
        if self._offset is None:
            self._offset = wall - close_ns
        return wall - self._offset
