"""Dead letters and poison messages: a bar message a worker cannot use is kept with its raw bytes
and its reason (the worker's outbox, then the Redis stream ``dead_letter_stream``) and reading
goes on past it; a message a worker died on twice is skipped as poison.

A worker marks the message it is working on in a small file before it starts on it and clears
the mark after (two ``pwrite`` calls, no fsync: the mark has to outlive the process, not the
machine). A worker that starts and finds a mark left behind died on that message; the count of
such deaths per message is committed in the outbox.

A message is known by its source, its position and a digest of its bytes
(:func:`message_id`): read again after a restart, or by another worker, it has the same id; a
different message at the same position (a bars file replaced and read from its start) has
another, so it is neither dropped as already dead-lettered nor blamed for an earlier death."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from mlcore.serving._bars import MAX_MESSAGE_BYTES, RawBar

POISON_DEATHS = 2  # a message the worker died on this many times is skipped
_MARK_BYTES = 1024
_KEEP_DEATHS = 64  # the messages whose deaths are remembered (the newest)


@dataclass(frozen=True)
class DeadLetter:
    """A refused message: its id (from where it was read), reason, detail and raw bytes."""

    id: str
    source: str
    position: str
    reason: str
    detail: str
    raw: bytes
    at_ns: int
    symbol: str | None = None  # where the message named a known symbol (a bar a check refused)
    bar_ts_ns: int | None = None  # and its bar time

    def row(self) -> tuple[str, str, str, str, str, bytes, int, str | None, int | None]:
        """The outbox row."""
        return (self.id, self.source, self.position, self.reason, self.detail, self.raw,
                self.at_ns, self.symbol, self.bar_ts_ns)  # fmt: skip


def message_id(raw: RawBar) -> str:
    """The id of ``raw`` from its source, position and bytes (see the module docstring)."""
    digest = hashlib.sha256(f"{raw.source}\0{raw.position}\0".encode())
    digest.update(raw_bytes(raw))
    return digest.hexdigest()[:24]


def raw_bytes(raw: RawBar, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """The message as bytes, at most ``limit + 1`` of them: a line as read, a stream entry's
    fields as a JSON object (bytes that are not UTF-8 as backslash escapes)."""
    if isinstance(raw.payload, bytes):
        data = raw.payload
    else:

        def text(v: Any) -> str:
            return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)

        data = json.dumps({text(k): text(v) for k, v in raw.payload.items()}).encode()
    return data[: limit + 1]


def dead_letter(
    raw: RawBar, key: str, reason: str, detail: str, at_ns: int,
    symbol: str | None = None, bar_ts_ns: int | None = None,
) -> DeadLetter:  # fmt: skip
    """The dead letter of ``raw`` (of id ``key``, see :func:`message_id`)."""
    return DeadLetter(key, raw.source, raw.position, reason,
                      detail[:500], raw_bytes(raw), at_ns, symbol, bar_ts_ns)  # fmt: skip


# KEYS: stream. ARGV: seen-key prefix, ttl, maxlen, then 7 values per letter. A letter already
# sent (by this worker before a crash, or by another worker reading the same file) is skipped.
_SEND_ONCE = """
local sent = 0
for i = 4, #ARGV, 7 do
  if redis.call('SET', ARGV[1] .. ARGV[i], '1', 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'id', ARGV[i], 'source', ARGV[i + 1],
               'position', ARGV[i + 2], 'reason', ARGV[i + 3], 'detail', ARGV[i + 4],
               'raw', ARGV[i + 5], 'at_ns', ARGV[i + 6])
    sent = sent + 1
  end
end
return sent
"""


class DeadLetterPublisher:
    """Sends the outbox's dead letters to the Redis stream, each id once."""

    def __init__(self, client: redis.Redis, stream: str, ttl_seconds: int, maxlen: int) -> None:
        self.client, self.stream, self.ttl, self.maxlen = client, stream, ttl_seconds, maxlen
        self._script = client.register_script(_SEND_ONCE)

    def send(self, rows: list[tuple[Any, ...]]) -> int:
        """Send outbox rows (seq, id, source, position, reason, detail, raw, at_ns); return
        how many were new. ``redis.RedisError`` when Redis is away."""
        args: list[Any] = [f"{self.stream}:seen:", self.ttl, self.maxlen]
        for _seq, *values in rows:
            args += values
        return int(self._script(keys=[self.stream], args=args))


class InflightMark:
    """The message a worker is working on, kept in ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        head = os.pread(self.fd, _MARK_BYTES, 0)
        #: (source, position, message id) of the message the last run died on
        self.left_behind: tuple[str, str, str] | None = None
        if head[:1] == b"1":
            try:
                source, position, key = json.loads(head[1:].decode())
                self.left_behind = (str(source), str(position), str(key))
            except (ValueError, TypeError):
                pass  # a mark cut short: nothing to blame
        self.clear()

    def set(self, raw: RawBar, key: str) -> None:
        """Mark ``raw`` (of id ``key``) as being worked on."""
        doc = json.dumps([raw.source[:300], raw.position[:300], key]).encode()
        os.pwrite(self.fd, b"1" + doc.ljust(_MARK_BYTES - 1), 0)

    def clear(self) -> None:
        """Nothing is being worked on."""
        os.pwrite(self.fd, b"0", 0)

    def close(self) -> None:
        """Clear the mark and close its file (a clean stop)."""
        self.clear()
        os.close(self.fd)


def count_death(deaths: dict[str, int], key: str) -> int:
    """Add a death on the message of id ``key`` to ``deaths``; return its count. Only the
    newest _KEEP_DEATHS messages are remembered."""
    deaths[key] = deaths.pop(key, 0) + 1
    while len(deaths) > _KEEP_DEATHS:
        del deaths[next(iter(deaths))]
    return deaths[key]
