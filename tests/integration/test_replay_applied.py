"""A replay's workers never report the flags they apply under the live workers' ids."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import redis

from mlcore.serving._frontier import applied_key
from mlcore.serving._worker_flags import report_applied_seq
from tests.conftest import redis_url


def _worker(client: redis.Redis, key: str, *, replay: bool) -> SimpleNamespace:
    """The parts of a Worker that report_applied_seq reads (a real Redis behind them)."""
    spec = SimpleNamespace(worker_id="worker-0", replay_redis=replay)
    cfg = SimpleNamespace(serving=SimpleNamespace(redis=SimpleNamespace(ops_flags_key=key)))
    return SimpleNamespace(client=client, spec=spec, cfg=cfg, _applied_seq=7)


def test_a_replay_worker_leaves_the_live_workers_applied_report_alone() -> None:
    """Review: `mlcore serve --replay-last N` with REDIS_URL wrote its flags seq into the live
    ``{ops_flags_key}:applied`` hash as ``worker-0``, the id of a live worker, which an
    operator reads to see that a halt reached every worker."""
    client = redis.Redis.from_url(redis_url())
    key = f"test-a16-{uuid.uuid4().hex[:8]}:ops:flags"
    try:
        report_applied_seq(_worker(client, key, replay=True))  # type: ignore[arg-type]
        assert client.hget(applied_key(key), "worker-0") is None
        report_applied_seq(_worker(client, key, replay=False))  # type: ignore[arg-type]
        assert json.loads(client.hget(applied_key(key), "worker-0") or b"{}")["seq"] == 7
    finally:
        client.delete(applied_key(key))
