"""Ops flags and dead letters on a real Redis: a halt survives a Redis restart without
persistence (the reader keeps it and writes it back), a Redis that stays away halts new entries
after flags_max_age_seconds, and a dead letter sent twice lands once."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from mlcore.serving import FlagReader, OpsFlags, parse_flags, write_flags
from mlcore.serving._dead import DeadLetterPublisher
from tests.conftest import RedisServer

HALT = OpsFlags(global_halt=True, flatten_pairs=frozenset({"EUR_GBP"}))


def test_a_halt_survives_a_redis_restart_without_persistence(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persist=False)
    server.start()
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        reader = FlagReader(client, "ops:flags", tmp_path / "unused", max_age_s=0.5)
        write_flags(client, "ops:flags", tmp_path / "unused", HALT)
        assert reader.read() == HALT
        server.stop()
        assert reader.read() == HALT and not reader.stale  # away, within the limit
        time.sleep(0.6)
        assert reader.read() == HALT and reader.stale and reader.in_force().global_halt
        server.start()  # back, empty: the document is gone
        assert client.get("ops:flags") is None
        assert reader.read() == HALT and not reader.stale
        assert parse_flags(client.get("ops:flags"), "redis") == HALT  # written back
    finally:
        server.stop()


def test_stale_flags_halt_new_entries_even_when_none_were_set(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persist=False)
    server.start()
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    reader = FlagReader(client, "ops:flags", tmp_path / "unused", max_age_s=0.3)
    assert reader.read() == OpsFlags()
    server.stop()
    time.sleep(0.4)
    reader.read()
    assert reader.in_force() == OpsFlags(global_halt=True)


def test_a_dead_letter_sent_twice_lands_once(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persist=False)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        pub = DeadLetterPublisher(client, "dead", ttl_seconds=60, maxlen=1000)
        rows = [(1, "id1", "file:b", "10", "malformed", "not JSON", b"\xff{", 5),
                (2, "id2", "file:b", "20", "future", "2100", b"{}", 6)]  # fmt: skip
        assert pub.send(rows) == 2
        assert pub.send(rows[1:]) == 0  # a worker's retry, or a second worker on the file
        entries = client.xrange("dead")
        assert [(f[b"id"], f[b"reason"], f[b"raw"]) for _, f in entries] == [
            (b"id1", b"malformed", b"\xff{"), (b"id2", b"future", b"{}")
        ]  # fmt: skip
    finally:
        server.stop()
