"""Where a worker stood when it last sent signals straight to Redis (before their commit), and
the flags seq each worker applies.

A worker sends a batch's signals before committing them (for latency); the same pipeline
records its read positions in the hash ``{signals_stream}:frontier`` (field: the worker id). After
a crash the worker reads again from its last commit: the bars up to the frontier were already
sent, under the flags kept in that commit, so they are decided under those flags again (the
same signals, which Redis drops as sent) and not under flags changed while it was down: a flatten
set meanwhile must not turn a sent hold into an exit Redis would drop, nor a sent entry into a
hold that leaves the position unflattened."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

import redis

from mlcore.config import RedisDeliveryPolicy

log = logging.getLogger("mlcore.serving")


def frontier_key(policy: RedisDeliveryPolicy) -> str:
    """The hash of the workers' send frontiers."""
    return f"{policy.signals_stream}:frontier"


def applied_key(flags_key: str) -> str:
    """The hash worker id → {"seq", "at"} of the flags each worker applies."""
    return f"{flags_key}:applied"


def read_frontier(
    client: redis.Redis | None, policy: RedisDeliveryPolicy, worker_id: str
) -> dict[str, str]:
    """The positions the worker had read when it last sent (none known: empty)."""
    if client is None:
        return {}
    try:
        raw = client.hget(frontier_key(policy), worker_id)
        doc = json.loads(raw) if raw else {}
    except (redis.RedisError, ValueError) as exc:
        log.warning("send frontier not readable (%s): bars read again are decided under the "
                    "flags in force", exc)  # fmt: skip
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items()}


def _position(value: str) -> tuple[int, int] | None:
    """A file offset ("123") or a stream id ("ms-seq") as comparable numbers."""
    head, _, tail = value.partition("-")
    if not (head.isascii() and head.isdigit() and (not tail or tail.isdigit())):
        return None
    return int(head), int(tail or 0)


def ahead(frontier: Mapping[str, str], positions: Mapping[str, str]) -> bool:
    """Whether the frontier lies beyond the positions on any source both name."""
    for source, value in frontier.items():
        mark, here = _position(value), _position(positions.get(source, ""))
        if mark is not None and here is not None and mark > here:
            return True
    return False


def furthest(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, str]:
    """Per source, the position further on (``b``'s where either is not a position)."""
    out = dict(b)
    for source, value in a.items():
        mine, theirs = _position(value), _position(b.get(source, ""))
        if mine is not None and (theirs is None or mine > theirs):
            out[source] = value
    return out


def report_applied(client: redis.Redis, flags_key: str, worker_id: str, seq: int) -> None:
    """Say which flags seq the worker applies (and since when, epoch seconds)."""
    doc = json.dumps({"seq": seq, "at": time.time()})
    client.hset(applied_key(flags_key), worker_id, doc)
