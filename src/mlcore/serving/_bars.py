"""Live bars: the message format, its checks, and the two sources (Redis Streams, a growing
JSON-lines file). A source hands out raw messages with the position after each, so a worker can
commit how far it has read in the same transaction as what it produced from them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import redis

BAR_FIELDS = ("symbol", "ts", "open", "high", "low", "close", "volume")


class Bar(NamedTuple):
    """One bar of one symbol; ``ts_ns`` is the bar's start (UTC ns)."""

    symbol: str
    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarRejected(ValueError):
    """A bar message that cannot be used; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RawBar:
    """A message as read: where it came from, the position after it, its content."""

    source: str
    position: str
    payload: Mapping[str, Any] | bytes


def _ts_ns(value: Any) -> int:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise BarRejected("malformed", f"ts {value!r} is not an ISO-8601 time or integer ns")
    if value.isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise BarRejected("malformed", f"ts {value!r} is not an ISO-8601 time") from None
    if dt.tzinfo is None or dt.utcoffset() is None or dt.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
        raise BarRejected("malformed", f"ts {value!r} must be UTC (end with Z or +00:00)")
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _number(name: str, value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode()
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise BarRejected("malformed", f"{name} {value!r} is not a number") from None
    return out


def parse_bar(payload: Mapping[str, Any] | bytes) -> Bar:
    """Check one message (a JSON line, or a stream entry's fields) and return the bar."""
    if isinstance(payload, bytes):
        try:
            doc = json.loads(payload)
        except ValueError as exc:
            raise BarRejected("malformed", f"not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise BarRejected("malformed", f"expected a JSON object, got {type(doc).__name__}")
        fields: Mapping[Any, Any] = doc
    else:
        fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in payload.items()}
    missing = [f for f in BAR_FIELDS if f not in fields]
    if missing:
        raise BarRejected("malformed", f"missing field(s) {missing}")
    symbol = fields["symbol"]
    symbol = symbol.decode() if isinstance(symbol, bytes) else symbol
    if not isinstance(symbol, str) or not symbol:
        raise BarRejected("malformed", f"symbol {symbol!r} is not a non-empty string")
    o, h, lo, c, v = (_number(f, fields[f]) for f in ("open", "high", "low", "close", "volume"))
    if not (min(o, h, lo, c) > 0 and math.isfinite(o + h + lo + c)):
        raise BarRejected(
            "bad_price", f"{symbol}: prices must be finite and > 0, got {o, h, lo, c}"
        )
    if not (v >= 0 and math.isfinite(v)):
        raise BarRejected("bad_price", f"{symbol}: volume must be finite and >= 0, got {v}")
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise BarRejected(
            "ohlc_inconsistent", f"{symbol}: high/low do not bound open/close ({o, h, lo, c})"
        )
    return Bar(symbol, _ts_ns(fields["ts"]), o, h, lo, c, v)


def bar_message(bar: Bar) -> dict[str, str]:
    """The stream fields (and JSON-line keys) of a bar."""
    return {
        "symbol": bar.symbol, "ts": str(bar.ts_ns), "open": repr(bar.open),
        "high": repr(bar.high), "low": repr(bar.low), "close": repr(bar.close),
        "volume": repr(bar.volume),
    }  # fmt: skip


class FileBarSource:
    """Bars appended to a JSON-lines file; the position is the byte offset after a line. A line
    not yet ended by a newline is left for the next read (a writer may be half-way)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset

    def positions(self) -> dict[str, str]:
        """Where reading stands (for the checkpoint)."""
        return {f"file:{self.path.name}": str(self.offset)}

    def seek(self, positions: Mapping[str, str]) -> None:
        """Resume from a checkpoint."""
        self.offset = int(positions.get(f"file:{self.path.name}", "0"))

    def read(self, max_bars: int, block_ms: int) -> list[RawBar]:
        """Up to ``max_bars`` complete lines after the offset (empty when none: the worker's
        loop waits before asking again)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read(max_bars * 512)
        except FileNotFoundError:
            data = b""
        out: list[RawBar] = []
        start = 0
        key = f"file:{self.path.name}"
        while len(out) < max_bars:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start:end].strip()
            start = end + 1
            if line:
                out.append(RawBar(key, str(self.offset + start), line))
        self.offset += start
        return out


class RedisBarSource:
    """Bars on Redis Streams ``{prefix}{symbol}``, read with XREAD from the last id seen."""

    def __init__(self, client: redis.Redis, prefix: str, symbols: list[str]) -> None:
        self.client = client
        self.streams = {f"{prefix}{s}": "0-0" for s in symbols}

    def positions(self) -> dict[str, str]:
        """The last id read per stream."""
        return dict(self.streams)

    def seek(self, positions: Mapping[str, str]) -> None:
        """Resume after the ids of a checkpoint."""
        for stream in self.streams:
            self.streams[stream] = positions.get(stream, "0-0")

    def read(self, max_bars: int, block_ms: int) -> list[RawBar]:
        """Up to ``max_bars`` entries per stream, waiting up to ``block_ms`` when none."""
        streams: dict[Any, Any] = dict(self.streams)
        reply: Any = self.client.xread(streams, count=max_bars, block=block_ms or None)
        out: list[RawBar] = []
        for stream, entries in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                out.append(RawBar(name, eid, fields))
                self.streams[name] = eid
        # Entries of several streams interleave by time; ids are milliseconds-sequence.
        out.sort(key=lambda r: tuple(int(p) for p in r.position.split("-")))
        return out
