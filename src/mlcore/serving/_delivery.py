"""Where signals go after the outbox commit: Redis (a stream read with consumer groups, and a
Pub/Sub channel), ``signal.json`` files for file-watching consumers (the MT5 EA), and the
``core.signals_live`` table, archived daily into ``core.signals_history``.

Redis delivery is exactly once per signal id: a Lua script remembers the id (``SET NX`` with a
TTL) and adds to the stream and publishes in the same atomic step, so a worker that dies after
sending but before marking the rows sent re-sends them harmlessly.

``valid_until`` holds at delivery: a signal from the outbox whose ``valid_until`` has passed
when it is about to be sent (it waited there while Redis was away) is not published: it is
marked ``expired`` in the outbox (which keeps it, as it keeps every signal), counted in
``core_signals_expired_total`` and logged; ``core.signals_live`` keeps the record of what was
decided."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mlcore.config import RedisDeliveryPolicy
from mlcore.data import write_atomic
from mlcore.registry import bars_refused, signals_history, signals_live
from mlcore.serving import _metrics as m
from mlcore.serving._outbox import Outbox

log = logging.getLogger("mlcore.serving")

# KEYS: stream, channel. ARGV: id-key prefix, ttl, maxlen, then id1, payload1, id2, ... Each id
# is remembered for ttl seconds; a remembered id is skipped, a new one added to the stream and
# published. Atomic, so a re-sent batch is delivered exactly once.
_PUBLISH_ONCE = """
local sent = 0
for i = 4, #ARGV, 2 do
  if redis.call('SET', ARGV[1] .. ARGV[i], '1', 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'id', ARGV[i], 'signal', ARGV[i + 1])
    redis.call('PUBLISH', KEYS[2], ARGV[i + 1])
    sent = sent + 1
  end
end
return sent
"""
Mark = tuple[str, str, str]  # a hash field to set with a send (hash, field, value)
_BATCH = 200  # signals per script call: long scripts would hold up Redis's other clients
REPLAY_SUFFIX = ":replay"


def replay_names(policy: RedisDeliveryPolicy) -> RedisDeliveryPolicy:
    """The Redis names a replay writes to: ``{signals_stream}:replay`` (stream and Pub/Sub
    channel), ``{dead_letter_stream}:replay`` and heartbeats under ``{heartbeat_prefix}replay:``.
    A replay's signals carry the replayed bars' time (their ``valid_until`` long past): never
    on the live stream or channel, where an executor could take them as live; their ids are
    remembered apart, so a replay never hides a live signal of the same bar either."""
    stream = f"{policy.signals_stream}{REPLAY_SUFFIX}"
    return policy.model_copy(update={
        "signals_stream": stream, "channel": stream,
        "dead_letter_stream": f"{policy.dead_letter_stream}{REPLAY_SUFFIX}",
        "heartbeat_prefix": f"{policy.heartbeat_prefix}replay:",
    })  # fmt: skip


class RedisPublisher:
    """Sends outbox rows to the signals stream and channel, in order, each id once."""

    def __init__(self, client: redis.Redis, policy: RedisDeliveryPolicy) -> None:
        self.client = client
        self.policy = policy
        self._sha: str | None = None
        self.down_since: float | None = None

    def _call(self, rows: list[tuple[int, str, bytes]], mark: Mark | None) -> list[Any]:
        p = self.policy
        if self._sha is None:
            self._sha = str(self.client.script_load(_PUBLISH_ONCE))
        # EVALSHA straight (redis-py's Script objects add a SCRIPT EXISTS round trip to every
        # pipeline); one call per _BATCH signals, all in one round trip.
        pipe = self.client.pipeline(transaction=False)
        if mark is not None:  # first: the frontier is never behind what was sent
            pipe.hset(*mark)
        for start in range(0, len(rows), _BATCH):
            args: list[Any] = [f"{p.signals_stream}:seen:", p.dedupe_ttl_seconds, p.stream_maxlen]
            for _seq, sid, payload in rows[start : start + _BATCH]:
                args += [sid, payload]
            pipe.evalsha(self._sha, 2, p.signals_stream, p.channel, *args)
        results = list(pipe.execute())
        return results[1:] if mark is not None else results

    def send(self, rows: list[tuple[int, str, bytes]], mark: Mark | None = None) -> tuple[int, int]:
        """Send rows (seq, id, payload) in one pipeline; return (last seq sent, new sends).
        ``mark`` (hash, field, value) is set in the same pipeline, before the rows (a
        worker's send frontier). Raises ``redis.RedisError`` when Redis cannot be reached
        (nothing is marked then)."""
        try:
            results = self._call(rows, mark)
        except redis.exceptions.NoScriptError:
            self._sha = None  # Redis restarted without its script cache: load it again
            results = self._call(rows, mark)
        return rows[-1][0], sum(int(r) for r in results)


def valid_until_ns(signal: dict[str, Any]) -> int:
    """A signal's ``valid_until`` in ns since the epoch (unreadable: 0, long past)."""
    try:
        at = datetime.fromisoformat(str(signal["valid_until"]).replace("Z", "+00:00"))
        return int(at.timestamp() * 1_000_000) * 1000
    except (KeyError, ValueError, TypeError, OverflowError):
        return 0


def _split_expired(
    rows: list[tuple[int, str, bytes]], now_ns: int | None
) -> tuple[list[tuple[int, str, bytes]], list[tuple[int, str, bytes]]]:
    """(still valid, expired) rows, each in order."""
    if now_ns is None:
        return rows, []
    live: list[tuple[int, str, bytes]] = []
    expired: list[tuple[int, str, bytes]] = []
    for row in rows:
        try:
            doc = json.loads(row[2])
        except ValueError:
            doc = {}
        (expired if valid_until_ns(doc if isinstance(doc, dict) else {}) <= now_ns
         else live).append(row)  # fmt: skip
    return live, expired


def deliver(
    outbox: Outbox, publisher: RedisPublisher, now_ns: int | None = None, batch: int = 1000
) -> int:
    """Send what the outbox holds undelivered, oldest first; return how many were new to Redis.
    When Redis is down the rows stay in the outbox and go on a later call, in order. With
    ``now_ns``, rows whose ``valid_until`` has passed are archived as expired, never sent."""
    sent = 0
    while True:
        rows = outbox.pending("delivered", batch)
        if not rows:
            return sent
        live, expired = _split_expired(rows, now_ns)
        if expired:
            outbox.mark_expired([seq for seq, _, _ in expired])
            m.SIGNALS_EXPIRED_TOTAL.inc(len(expired))
            log.warning(
                "SERVING_SIGNAL_EXPIRED: %d signals past their valid_until before they could be "
                "sent (%s .. %s): archived as expired in the outbox, not published",
                len(expired), expired[0][1], expired[-1][1],
            )  # fmt: skip
        if not live:
            continue
        try:
            last, new = publisher.send(live)
        except redis.RedisError as exc:
            if publisher.down_since is None:
                publisher.down_since = datetime.now(UTC).timestamp()
                log.warning("redis unavailable, signals kept in the outbox: %s", exc)
            return sent
        if publisher.down_since is not None:
            log.info("redis back: delivering the outbox in order")
            publisher.down_since = None
        outbox.mark("delivered", last)
        sent += new


def write_signal_files(root: Path, latest: dict[str, bytes]) -> None:
    """``{root}/{pair_id}/signal.json`` for each pair: its newest signal, written atomically
    (not fsynced: the outbox is the durable record, and rewrites the file after a crash)."""
    for pair_id, payload in latest.items():
        write_atomic(root / pair_id / "signal.json", payload + b"\n", durable=False)


class SignalFiles:
    """Writes ``signal.json`` files on a background thread, keeping only each pair's newest
    signal: a rename costs a few hundred microseconds here, which must not delay the next bar.
    :meth:`flush` waits until every signal handed over is on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pending: dict[str, bytes] = {}
        self._cv = threading.Condition()
        self._busy = False
        self._closed = False
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="signal-files", daemon=True)
        self._thread.start()

    def put(self, latest: dict[str, bytes]) -> None:
        """Hand over the newest signal of some pairs."""
        if latest:
            with self._cv:
                self._pending.update(latest)
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, {}
                self._busy = True
            try:
                write_signal_files(self.root, batch)
            except Exception as exc:  # a full disk must not stop inference; the outbox has all
                self.errors += 1
                log.error("signal.json not written: %s", exc)
            with self._cv:
                self._busy = False
                self._cv.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until what was handed over is written."""
        with self._cv:
            self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        """Write what is pending and stop the thread."""
        self.flush()
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(5)


def _row(payload: bytes, inference_ns: int | None = None) -> dict[str, Any]:
    s = json.loads(payload)
    return {
        "signal_id": s["id"],
        "ts": datetime.fromisoformat(s["timestamp"].replace("Z", "+00:00")),
        "pair_id": s["pair_id"], "model_version": s["model_version"],
        "action": s["metadata"]["action"], "side": s["metadata"]["side"],
        "return_prob": s["return_prob"], "risk_score": s["risk_score"],
        "position_scale": s["position_scale"], "theta1": s["theta1"], "theta2": s["theta2"],
        "payload": s,
        "inference_seconds": None if inference_ns is None else inference_ns / 1e9,
    }  # fmt: skip


def _insert_ignore(engine: Engine, table: Any, key: str = "signal_id") -> Any:
    maker = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    return maker(table).on_conflict_do_nothing(index_elements=[key])


def _utc(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)


def aggregate(outbox: Outbox, engine: Engine, batch: int = 2000) -> int:
    """Copy the outbox's signals not yet aggregated into ``core.signals_live`` (an id already
    there is kept), and its dead letters into ``core.bars_refused`` (without the raw bytes);
    return how many signal rows were read."""
    done = 0
    while rows := outbox.to_aggregate(batch):
        with engine.begin() as conn:
            conn.execute(_insert_ignore(engine, signals_live), [_row(p, ns) for _, p, ns in rows])
        outbox.mark("aggregated", rows[-1][0])
        done += len(rows)
    worker = outbox.path.stem
    while dead := outbox.dead_to_aggregate(batch):
        with engine.begin() as conn:
            conn.execute(_insert_ignore(engine, bars_refused, "message_id"), [
                {"message_id": mid, "worker_id": worker, "source": source[:2000],
                 "position": position[:2000], "reason": reason[:32], "detail": detail,
                 "refused_at": _utc(at_ns), "symbol": symbol, "bar_ts": _utc(bar_ts)}
                for _seq, mid, source, position, reason, detail, at_ns, symbol, bar_ts in dead
            ])  # fmt: skip
        outbox.mark_dead_aggregated(dead[-1][0])
    return done


def archive_signals(engine: Engine, before: datetime) -> int:
    """Move ``core.signals_live`` rows older than ``before`` into ``core.signals_history`` (the
    daily archive); return how many moved."""
    with engine.begin() as conn:
        old = conn.execute(select(signals_live).where(signals_live.c.ts < before)).mappings().all()
        if not old:
            return 0
        conn.execute(_insert_ignore(engine, signals_history), [dict(r) for r in old])
        conn.execute(delete(signals_live).where(signals_live.c.ts < before))
    return len(old)
