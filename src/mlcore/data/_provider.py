"""The market-data provider interface and the records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import pandas as pd

MAX_RAW_CHARS = 200  # of a rejected value kept for messages and reports


@dataclass(frozen=True)
class Reject:
    """One input row that was refused, with where it came from and the rule it broke."""

    origin: str  # file path or request description
    row: int  # 1-based data row in the file / position in the response; -1 when unknown
    field: str
    rule: str
    raw: str

    def __post_init__(self) -> None:
        # A 200 MB cell would be echoed whole by every message and report naming it.
        if len(self.raw) > MAX_RAW_CHARS:
            cut = f"{self.raw[: MAX_RAW_CHARS - 40]}... ({len(self.raw):,} characters)"
            object.__setattr__(self, "raw", cut)

    def describe(self) -> str:
        """Return a one-line description naming file, row, field and rule."""
        return (
            f"{self.origin}: row {self.row}: field '{self.field}': {self.rule} (got {self.raw!r})"
        )


@dataclass
class FetchResult:
    """Bars from one provider call: columns ts (UTC), open, high, low, close, volume."""

    bars: pd.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    source: str = ""
    rows_read: int = 0


@runtime_checkable
class MarketDataProvider(Protocol):
    """Anything that can deliver OHLCV bars for a symbol and timeframe over [start, end]."""

    name: str

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> FetchResult:
        """Return bars with ``start <= ts <= end`` (UTC), sorted by ts."""
        ...
