"""Live bars: the message format, its checks, and the two sources (Redis Streams, a growing
JSON-lines file). A source hands out raw messages with the position after each, so a worker can
commit how far it has read in the same transaction as what it produced from them."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import redis

from mlcore.data._rules import MAX_VOLUME
from mlcore.errors import shown

log = logging.getLogger("mlcore.serving")
BAR_FIELDS = ("symbol", "ts", "open", "high", "low", "close", "volume")
# Every reason a bar can be refused for (the bars_refused_total label and the dead letter's).
BAR_REASONS = frozenset({
    "malformed", "too_large", "bad_price", "ohlc_inconsistent",  # the message itself
    "future", "off_grid", "duplicate", "out_of_order", "bad_print",  # the live DQ guard
    "unknown_symbol", "poison",  # not ours, or a message a worker died on twice
})  # fmt: skip
MAX_MESSAGE_BYTES = 4096  # serving_policy bar_source.max_message_bytes' default
MAX_SYMBOL_CHARS = 64
_MAX_NUMBER_CHARS = 64
_INT_TS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: "²".isdigit() is True
_MAX_TS_NS = 2**63 - 1


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
    """A bar message that cannot be used; ``reason`` (one of BAR_REASONS) is the metric label
    and the dead letter's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RawBar:
    """A message as read: where it came from, the position after it, its content and its size
    in bytes (a line over the size limit is handed out cut to the limit; ``size`` is whole)."""

    source: str
    position: str
    payload: Mapping[Any, Any] | bytes
    size: int = 0


def _text(name: str, value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BarRejected("malformed", f"{name} {shown(value)} is not UTF-8") from None
    if isinstance(value, str):
        return value
    raise BarRejected("malformed", f"{name} {shown(value)} is not text")


def _ts_ns(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        ns = value
    elif isinstance(value, (str, bytes)):
        text = _text("ts", value)
        if _INT_TS.fullmatch(text):
            ns = int(text)
        else:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                why = f"ts {shown(text)} is not an ISO-8601 time"
                raise BarRejected("malformed", why) from None
            offset = dt.utcoffset()
            if offset is None or offset.total_seconds() != 0:
                why = f"ts {shown(text)} must be UTC (end with Z or +00:00)"
                raise BarRejected("malformed", why)
            if dt.year < 1970:
                raise BarRejected("malformed", f"ts {shown(text)} is before 1970")
            ns = int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    else:
        raise BarRejected("malformed", f"ts {shown(value)} is not an ISO-8601 time or integer ns")
    if not 0 <= ns <= _MAX_TS_NS:
        raise BarRejected("malformed", f"ts {shown(value)} is outside 1970-2262 in integer ns")
    return ns


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, bytes)):
        raise BarRejected("malformed", f"{name} {shown(value)} is not a number")
    if isinstance(value, (int, float)):
        try:
            return float(value)  # a 400-digit JSON integer does not fit a float
        except OverflowError:
            raise BarRejected("malformed", f"{name} {shown(value)} is too large") from None
    text = _text(name, value)
    if len(text) > _MAX_NUMBER_CHARS:
        raise BarRejected("malformed", f"{name} is {len(text)} characters long, not a number")
    if not text.isascii() or "_" in text:  # float() takes "١" and "1_000"; a feed never sends them
        raise BarRejected("malformed", f"{name} {shown(text)} is not a plain decimal number")
    try:
        return float(text)
    except ValueError:
        raise BarRejected("malformed", f"{name} {shown(text)} is not a number") from None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's ``object_pairs_hook``: a key given twice is refused (``json`` keeps the
    last, so ``"close": 1.5, "close": 999`` or a halt and its lifting in one document
    would silently pick one)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"key {shown(key)} given twice")
        seen.add(key)
    return dict(pairs)


def _fields(payload: Mapping[Any, Any] | bytes) -> Mapping[str, Any]:
    if isinstance(payload, bytes):
        try:
            doc = json.loads(payload, object_pairs_hook=unique_keys)
        except RecursionError:
            raise BarRejected("malformed", "not JSON (nested too deeply)") from None
        except ValueError as exc:
            raise BarRejected("malformed", f"not JSON ({shown(str(exc), 80)})") from None
        if not isinstance(doc, dict):
            raise BarRejected("malformed", f"expected a JSON object, got {type(doc).__name__}")
        return doc
    out = {}
    for key, value in payload.items():
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        out[str(key)] = value
    return out


def message_size(payload: Mapping[Any, Any] | bytes) -> int:
    """Bytes of a message: a line's length, or a stream entry's keys and values together."""
    if isinstance(payload, bytes):
        return len(payload)
    return sum(len(k) + (len(v) if isinstance(v, (bytes, str)) else 32) for k, v in payload.items())


def parse_bar(
    payload: Mapping[Any, Any] | bytes, *, size: int | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> Bar:  # fmt: skip
    """Check one message (a JSON line, or a stream entry's fields) and return the bar; anything
    else raises :class:`BarRejected` (``size``: the message's whole size, when the payload
    was cut)."""
    n = message_size(payload) if size is None else size
    if n > max_bytes:
        raise BarRejected("too_large", f"message of {n} bytes, over the {max_bytes}-byte limit")
    fields = _fields(payload)
    missing = [f for f in BAR_FIELDS if f not in fields]
    if missing:
        raise BarRejected("malformed", f"missing field(s) {missing}")
    symbol = _text("symbol", fields["symbol"])
    if not (0 < len(symbol) <= MAX_SYMBOL_CHARS and symbol.isprintable()):
        raise BarRejected(
            "malformed",
            f"symbol {shown(symbol)} is not 1-{MAX_SYMBOL_CHARS} printable characters",
        )
    try:
        symbol.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        raise BarRejected("malformed", f"symbol {shown(symbol)} is not valid Unicode") from None
    ts_ns = _ts_ns(fields["ts"])
    o, h, lo, c, v = (_number(f, fields[f]) for f in ("open", "high", "low", "close", "volume"))
    if not (min(o, h, lo, c) > 0 and math.isfinite(o + h + lo + c)):
        raise BarRejected(
            "bad_price", f"{symbol}: prices must be finite and > 0, got {o, h, lo, c}"
        )
    if not (0 <= v <= MAX_VOLUME):  # NaN fails too
        raise BarRejected("bad_price", f"{symbol}: volume must be in [0, {MAX_VOLUME:g}], got {v}")
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise BarRejected(
            "ohlc_inconsistent", f"{symbol}: high/low do not bound open/close ({o, h, lo, c})"
        )
    return Bar(symbol, ts_ns, o, h, lo, c, v)


def bar_message(bar: Bar) -> dict[str, str]:
    """The stream fields (and JSON-line keys) of a bar."""
    return {
        "symbol": bar.symbol, "ts": str(bar.ts_ns), "open": repr(bar.open),
        "high": repr(bar.high), "low": repr(bar.low), "close": repr(bar.close),
        "volume": repr(bar.volume),
    }  # fmt: skip


class FileBarSource:
    """Bars appended to a JSON-lines file; the position is the byte offset after a line. A line
    not yet ended by a newline is left for the next read (a writer may be half-way). A line
    longer than ``max_bytes`` is handed out cut to ``max_bytes + 1`` bytes with its whole size
    (the parser refuses it as too_large): it can neither stall the source nor fill memory."""

    def __init__(self, path: Path, offset: int = 0, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.path = path
        self.offset = offset
        self.max_bytes = max_bytes
        self._chunk = max(1 << 16, max_bytes + 2)
        self._warned = False  # the file was found unusable (logged once)

    def positions(self) -> dict[str, str]:
        """Where reading stands (for the checkpoint)."""
        return {f"file:{self.path.name}": str(self.offset)}

    def _open(self) -> BinaryIO | None:
        """The bars file open for reading, None when absent or not a regular file (never
        blocking: a FIFO in its place must not hang the worker)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:  # no permission, a folder on some systems: nothing to read
            self._unusable(f"cannot be opened ({exc.strerror or exc})")
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._unusable("is not a regular file (a folder, a FIFO, a device)")
            return None
        self._warned = False
        return os.fdopen(fd, "rb")

    def _unusable(self, why: str) -> None:
        """The bars file cannot be read: no bars (logged once until it can be again)."""
        if not self._warned:
            log.error("bars file %s %s: no bars read from it", self.path, why)
            self._warned = True

    def seek(self, positions: Mapping[str, str]) -> None:
        """Resume from a checkpoint."""
        value = str(positions.get(f"file:{self.path.name}", "0"))
        ok = value.isascii() and value.isdigit() and len(value) <= 15
        self.offset = int(value) if ok else 0

    def _newline_after(self, fh: BinaryIO, pos: int) -> int | None:
        """The offset of the first newline at or after ``pos`` (None: not written yet)."""
        while True:
            fh.seek(pos)
            data = fh.read(self._chunk)
            if not data:
                return None
            found = data.find(b"\n")
            if found >= 0:
                return pos + found
            pos += len(data)

    def read(self, max_bars: int, block_ms: int) -> list[RawBar]:
        """Up to ``max_bars`` complete lines after the offset (empty when none: the worker's
        loop waits before asking again)."""
        out: list[RawBar] = []
        key = f"file:{self.path.name}"
        fh = self._open()
        if fh is None:
            return out
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size < self.offset:
                # Truncated or replaced by a shorter file: what is there now is new; read it
                # from the start (bars already taken are refused by the guard as duplicates).
                log.warning("%s is shorter (%d bytes) than the offset read so far (%d): the "
                            "file was replaced, reading it from the start", self.path, size,
                            self.offset)  # fmt: skip
                self.offset = 0
            while len(out) < max_bars:
                fh.seek(self.offset)
                data = fh.read(self._chunk)
                start = 0
                while len(out) < max_bars:
                    end = data.find(b"\n", start)
                    if end < 0:
                        break
                    line = data[start:end].strip()
                    start = end + 1
                    if line:
                        out.append(RawBar(key, str(self.offset + start), line[: self.max_bytes + 1],
                                          len(line)))  # fmt: skip
                if start == 0 and len(data) == self._chunk:
                    # A whole chunk without a newline: one line over the limit.
                    end_at = self._newline_after(fh, self.offset + len(data))
                    if end_at is None:
                        break  # its writer is not done with it yet
                    out.append(RawBar(key, str(end_at + 1), data[: self.max_bytes + 1],
                                      end_at - self.offset))  # fmt: skip
                    self.offset = end_at + 1
                    continue
                self.offset += start
                if len(data) < self._chunk or start == 0:
                    break
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
                out.append(RawBar(name, eid, fields, message_size(fields)))
                self.streams[name] = eid
        # Entries of several streams interleave by time; ids are milliseconds-sequence.
        out.sort(key=lambda r: tuple(int(p) for p in r.position.split("-")))
        return out
