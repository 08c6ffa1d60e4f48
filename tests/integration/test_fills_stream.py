"""Fills on the real Redis stream into a real PostgreSQL registry: a hostile message mixed in
is quarantined, the others land once although delivered twice, and messages read but never
acknowledged (a consumer killed before its ack) land on the next run, once."""

from __future__ import annotations

import json
import os
import signal as signal_module
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select

from mlcore.config import AppConfig, load_config
from mlcore.feedback import (
    IngestCounts,
    StreamReader,
    ensure_group,
    fill_folders,
    ingest_folder,
    land_rules,
    read_quarantine,
    read_trades,
    served_signals,
    simulate_fills,
    write_fill_files,
)
from mlcore.registry import Alerts, fills_quarantine, live_trades, make_engine, upgrade
from tests.conftest import REPO, config_with, postgres_url, redis_url
from tests.unit._feedback_support import fill_doc, signal, store

NOW = datetime(2025, 1, 7, tzinfo=UTC)


@pytest.fixture
def engine() -> Iterator[Engine]:
    for url in postgres_url():
        db = make_engine(url)
        upgrade(db)
        yield db
        db.dispose()


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url())
    yield c
    c.close()


def _reader(client: redis.Redis, stream: str, consumer: str = "c1") -> StreamReader:
    return StreamReader(client, stream, "g", consumer, batch=2, block_ms=100)


def _once(cfg: AppConfig, engine: Engine, client: redis.Redis, stream: str) -> IngestCounts:
    return _reader(client, stream).run(engine, land_rules(cfg), follow=False, clock=lambda: NOW)


def _raws(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        return [bytes(r[0]) for r in conn.execute(select(fills_quarantine.c.raw))]


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_stream_fills_land_once_and_the_hostile_one_is_quarantined(
    cfg: AppConfig, engine: Engine, client: redis.Redis
) -> None:
    stream = f"test:fills:{uuid.uuid4().hex}"
    sigs = [signal(bar=0), signal(bar=2, action="exit", side=-1, prices=(1.12, 1.31)),
            signal("BTC_ETH", bar=1, prices=(60_000.0, 3_000.0), units=(1, 18))]  # fmt: skip
    store(engine, *sigs)
    docs = [fill_doc(s, fill_id=f"EA-{i}") for i, s in enumerate(sigs)]
    try:
        for doc in docs:  # each delivered twice
            client.xadd(stream, {"fill": json.dumps(doc)})
            client.xadd(stream, {"fill": json.dumps(doc)})
        client.xadd(stream, {"fill": b'\xff{"qty": NaN'})
        client.xadd(stream, {"not_a_fill": "hello"})
        client.xadd(stream, {"fill": b"[" * 200_000})
        client.xadd(stream, {"fill": json.dumps(docs[0] | {"signal_id": "e" * 32, "fill_id": "X"})})
        counts = _reader(client, stream).run(
            engine, land_rules(cfg), follow=False, clock=lambda: NOW
        )
        assert (counts.new, counts.duplicate, counts.quarantined) == (3, 3, 4)
        assert counts.reasons == {"not_utf8": 1, "bad_message": 1, "orphan": 1, "too_large": 1}
        assert _count(engine, live_trades) == 3 and _count(engine, fills_quarantine) == 4
        kept = max(len(r) for r in _raws(engine))
        assert kept == land_rules(cfg).max_bytes + 1  # the oversized message kept only so far
        assert Alerts(engine).recent("FEEDBACK_FILL_QUARANTINED")
        assert client.xpending(stream, "g")["pending"] == 0  # all acknowledged
        closed = [t for t in read_trades(engine) if t.pnl_usd is not None]
        assert [t.entry_fill_id for t in closed] == ["EA-0"]
        assert {q.location.split("#")[0] for q in read_quarantine(engine)} == {stream}
        # Run again: nothing new.
        again = _reader(client, stream).run(
            engine, land_rules(cfg), follow=False, clock=lambda: NOW
        )
        assert (again.new, again.quarantined) == (0, 0)
    finally:
        client.delete(stream)


def test_messages_read_but_never_acknowledged_land_on_the_next_run(
    cfg: AppConfig, engine: Engine, client: redis.Redis
) -> None:
    stream = f"test:fills:{uuid.uuid4().hex}"
    sig = signal(bar=0)
    store(engine, sig)
    try:
        ensure_group(client, stream, "g")
        client.xadd(stream, {"fill": json.dumps(fill_doc(sig, fill_id="K1"))})
        client.xadd(stream, {"fill": b"{broken"})
        # A consumer that read both and died before landing or acknowledging them.
        assert client.xreadgroup("g", "c1", {stream: ">"}, count=10)
        assert client.xpending(stream, "g")["pending"] == 2
        counts = _reader(client, stream).run(
            engine, land_rules(cfg), follow=False, clock=lambda: NOW
        )
        assert (counts.new, counts.quarantined) == (1, 1)
        assert client.xpending(stream, "g")["pending"] == 0
        assert _count(engine, live_trades) == 1
    finally:
        client.delete(stream)


def test_follow_lands_fills_as_they_come_and_stops(
    cfg: AppConfig, engine: Engine, client: redis.Redis
) -> None:
    stream = f"test:fills:{uuid.uuid4().hex}"
    sig = signal(bar=0)
    store(engine, sig)
    stop = threading.Event()
    out: list[object] = []
    reader = _reader(client, stream)
    rules = land_rules(cfg)
    thread = threading.Thread(
        target=lambda: out.append(reader.run(engine, rules, follow=True, stop=stop))
    )
    try:
        ensure_group(client, stream, "g")
        thread.start()
        client.xadd(stream, {"fill": json.dumps(fill_doc(sig, fill_id="F1"))})
        for _ in range(100):
            if _count(engine, live_trades) == 1:
                break
            threading.Event().wait(0.05)
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        assert _count(engine, live_trades) == 1
    finally:
        stop.set()
        client.delete(stream)


_INGEST = """
import sys
from mlcore.config import load_config
from mlcore.feedback import ingest_folder
from mlcore.registry import make_engine
from pathlib import Path
ingest_folder(load_config(Path(sys.argv[2]), "dev"), make_engine(sys.argv[1]))
"""


def test_a_file_ingest_killed_midway_then_run_again_lands_each_fill_once(
    engine: Engine, archive: Path, tmp_path: Path
) -> None:
    # Five files per transaction, so that the kill falls between commits.
    root = config_with(tmp_path, {"analytics_policy": {"fills": {"read_batch": 5}}})
    cfg = load_config(root, "dev")
    sigs = [signal(pair, bar=b, prices=(1.1 + b / 1000, 1.3), units=(10, 8))
            for b in range(40) for pair in ("EUR_GBP", "XAU_XAG", "BTC_ETH")]  # fmt: skip
    store(engine, *sigs)
    drop, done, _ = fill_folders(cfg)
    served = served_signals(engine)
    write_fill_files(drop, simulate_fills(served, cfg.costs, cfg.analytics.fills.simulate))
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "ARCHIVE_PATH": str(archive), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _INGEST, url, str(root)], env=env, cwd=REPO)
    try:
        # Its start-up (imports, config) took over 30 s on a loaded CI machine: wait for the
        # first commits, not a fixed time.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if _count(engine, live_trades) >= 10 or proc.poll() is not None:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal_module.SIGKILL)
    finally:
        proc.wait(30)
    landed_before = _count(engine, live_trades)
    assert 0 < landed_before < len(sigs), "the kill came too late to test anything"
    counts = ingest_folder(cfg, engine)
    assert counts.new == len(sigs) - landed_before and counts.quarantined == 0
    assert counts.duplicate <= 5  # at most the batch committed but not moved when killed
    assert _count(engine, live_trades) == len(sigs)
    assert not list(drop.rglob("*.json")) and len(list(done.rglob("*.json"))) == len(sigs)
