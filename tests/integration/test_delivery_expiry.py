"""valid_until holds at delivery, on the real Redis: rows of the outbox whose valid_until has
passed are archived as expired (never sent, counted, logged); the others go out in order. While
Redis is away nothing is sent and nothing valid is lost."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from mlcore.config import RedisDeliveryPolicy
from mlcore.serving import Outbox, RedisPublisher, deliver
from mlcore.serving import _metrics as m
from tests.conftest import free_port, redis_url

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _policy(tag: str) -> RedisDeliveryPolicy:
    return RedisDeliveryPolicy(
        signals_stream=f"{tag}:signals", stream_maxlen=1000, channel=f"{tag}:live",
        dedupe_ttl_seconds=60, ops_flags_key=f"{tag}:flags", dead_letter_stream=f"{tag}:dead",
        heartbeat_prefix=f"{tag}:hb:", heartbeat_seconds=1, heartbeat_ttl_seconds=3,
    )  # fmt: skip


def _rows(box: Outbox, minutes: list[int]) -> list[str]:
    ids = [f"sig{i}" for i in range(len(minutes))]
    rows = []
    for i, (sid, mins) in enumerate(zip(ids, minutes, strict=True)):
        until = (NOW + timedelta(minutes=mins)).isoformat().replace("+00:00", "Z")
        rows.append((sid, "XAU_XAG", i, json.dumps({"id": sid, "valid_until": until}).encode(), 0))
    box.commit(rows, {}, {})
    return ids


def test_expired_rows_are_archived_and_the_rest_sent_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tag = f"test:{uuid.uuid4().hex[:8]}"
    box = Outbox(tmp_path / "w.db")
    ids = _rows(box, [-10, 5, -1, 0, 7, -30])
    now_ns = int(NOW.timestamp()) * 1_000_000_000
    away = RedisPublisher(redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}"), _policy(tag))
    before = m.SIGNALS_EXPIRED_TOTAL._value.get()
    assert deliver(box, away, now_ns) == 0  # Redis away: the expired are archived already
    assert box.expired_ids() == ["sig0", "sig2", "sig3", "sig5"]  # valid_until == now: expired
    assert box.count("delivered") == 2  # the two still valid wait
    client = redis.Redis.from_url(redis_url())
    try:
        assert deliver(box, RedisPublisher(client, _policy(tag)), now_ns) == 2
        sent = [f[b"id"].decode() for _, f in client.xrange(f"{tag}:signals")]
        assert sent == ["sig1", "sig4"]
        assert box.count("delivered") == 0 and len(ids) == box.count()  # the outbox keeps all
        assert m.SIGNALS_EXPIRED_TOTAL._value.get() - before == 4
        assert "SERVING_SIGNAL_EXPIRED: 4 signals" in caplog.text
    finally:
        client.delete(*client.keys(f"{tag}:*") or ["-"])
        box.close()


def test_without_a_time_nothing_expires_and_an_old_outbox_gains_the_column(
    tmp_path: Path,
) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE signals (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
        "pair_id TEXT NOT NULL, bar_ts_ns INTEGER NOT NULL, payload BLOB NOT NULL, "
        "delivered INTEGER NOT NULL DEFAULT 0, aggregated INTEGER NOT NULL DEFAULT 0);"
    )
    conn.close()
    box = Outbox(path)  # an outbox from before: the expired column is added
    _rows(box, [-10])
    tag = f"test:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url())
    try:
        assert deliver(box, RedisPublisher(client, _policy(tag)), None) == 1  # a replay's time
        assert box.expired_ids() == []
    finally:
        client.delete(*client.keys(f"{tag}:*") or ["-"])
        box.close()
