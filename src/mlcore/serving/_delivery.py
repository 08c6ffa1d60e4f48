"""Where signals go after the outbox commit: Redis (a stream read with consumer groups, and a
Pub/Sub channel), ``signal.json`` files for file-watching consumers (the MT5 EA), and the
``core.signals_live`` table, archived daily into ``core.signals_history``.

Redis delivery is exactly once per signal id: a Lua script remembers the id (``SET NX`` with a
TTL) and adds to the stream and publishes in the same atomic step, so a worker that dies after
sending but before marking the rows sent re-sends them harmlessly."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mlcore.config import RedisDeliveryPolicy
from mlcore.data import write_atomic
from mlcore.registry import signals_history, signals_live
from mlcore.serving._outbox import Outbox

log = logging.getLogger("mlcore.serving")

_PUBLISH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[1], 'signal', ARGV[2])
  redis.call('PUBLISH', KEYS[3], ARGV[2])
  return 1
end
return 0
"""


class RedisPublisher:
    """Sends outbox rows to the signals stream and channel, in order, each id once."""

    def __init__(self, client: redis.Redis, policy: RedisDeliveryPolicy) -> None:
        self.client = client
        self.policy = policy
        self._script = client.register_script(_PUBLISH_ONCE)
        self.down_since: float | None = None

    def send(self, rows: list[tuple[int, str, bytes]]) -> tuple[int, int]:
        """Send rows (seq, id, payload) in one pipeline; return (last seq sent, new sends).
        Raises ``redis.RedisError`` when Redis cannot be reached (nothing is marked then)."""
        p = self.policy
        pipe = self.client.pipeline(transaction=False)
        for _seq, sid, payload in rows:
            self._script(
                keys=[f"{p.signals_stream}:seen:{sid}", p.signals_stream, p.channel],
                args=[sid, payload, p.dedupe_ttl_seconds, p.stream_maxlen], client=pipe,
            )  # fmt: skip
        results = pipe.execute()
        return rows[-1][0], sum(int(r) for r in results)


def deliver(outbox: Outbox, publisher: RedisPublisher, batch: int = 1000) -> int:
    """Send what the outbox holds undelivered, oldest first; return how many were new to Redis.
    When Redis is down the rows stay in the outbox and go on a later call, in order."""
    sent = 0
    while True:
        rows = outbox.pending("delivered", batch)
        if not rows:
            return sent
        try:
            last, new = publisher.send(rows)
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


def _row(payload: bytes) -> dict[str, Any]:
    s = json.loads(payload)
    return {
        "signal_id": s["id"],
        "ts": datetime.fromisoformat(s["timestamp"].replace("Z", "+00:00")),
        "pair_id": s["pair_id"], "model_version": s["model_version"],
        "action": s["metadata"]["action"], "side": s["metadata"]["side"],
        "return_prob": s["return_prob"], "risk_score": s["risk_score"],
        "position_scale": s["position_scale"], "theta1": s["theta1"], "theta2": s["theta2"],
        "payload": s,
    }  # fmt: skip


def _insert_ignore(engine: Engine, table: Any) -> Any:
    maker = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    return maker(table).on_conflict_do_nothing(index_elements=["signal_id"])


def aggregate(outbox: Outbox, engine: Engine, batch: int = 2000) -> int:
    """Copy the outbox's signals not yet aggregated into ``core.signals_live`` (an id already
    there is kept); return how many rows were read."""
    done = 0
    while True:
        rows = outbox.pending("aggregated", batch)
        if not rows:
            return done
        with engine.begin() as conn:
            conn.execute(_insert_ignore(engine, signals_live), [_row(p) for _, _, p in rows])
        outbox.mark("aggregated", rows[-1][0])
        done += len(rows)


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
