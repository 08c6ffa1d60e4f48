"""Serving against the real Redis on this machine (and a private redis-server that the tests
stop and start): signals delivered once and in order through the stream and Pub/Sub; an outbox
that keeps them while Redis is away; a worker killed mid-run and restarted by the supervisor;
malformed bars; ops flags; stale bars; and a damaged deployed model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from mlcore.config import AppConfig, load_config
from mlcore.demo import DemoResult
from mlcore.registry import open_registry
from mlcore.serving import (
    NO_FLAGS,
    OpsFlags,
    Outbox,
    Supervisor,
    Worker,
    WorkerSpec,
    bar_message,
    deployed_model,
    replay_bars,
    write_bars_file,
    write_flags,
)
from tests.conftest import RedisServer, config_with, redis_url

BARS = 300
THETA = (0.55, 0.5)


@pytest.fixture(scope="module")
def base(demo_run: tuple[AppConfig, DemoResult], tmp_path_factory: pytest.TempPathFactory):
    """The demo's model, the replayed bars and the signals a worker makes of them without
    Redis (the reference)."""
    cfg, result = demo_run
    assert result.training is not None
    folder = result.training.folder
    pairs = tuple(p.pair_id for p in cfg.universe.pairs)
    bars, warm = replay_bars(cfg, list(pairs), BARS)
    root = tmp_path_factory.mktemp("ref")
    write_bars_file(root / "bars.jsonl", bars)
    spec = WorkerSpec("worker-0", pairs, str(cfg.config_root), cfg.env_name, str(folder), THETA,
                      replay=True, warm_until_ns=warm, exit_when_idle_seconds=0.2,
                      root=str(root / "serving"), bars_file=str(root / "bars.jsonl"))  # fmt: skip
    Worker(spec, cfg=cfg).run()
    box = Outbox(root / "serving" / "outbox" / "worker-0.db")
    reference = [json.loads(p) for p in box.payloads()]
    box.close()
    assert len(reference) > BARS
    return cfg, folder, bars, spec, reference


def _redis_cfg(cfg: AppConfig, tmp: Path, url: str, monkeypatch: pytest.MonkeyPatch,
               **serving: Any) -> tuple[AppConfig, str]:  # fmt: skip
    """The demo configuration with its own Redis key names, REDIS_URL set."""
    tag = f"test:{uuid.uuid4().hex[:8]}"
    keys = {
        "signals_stream": f"{tag}:signals", "stream_maxlen": 100000, "channel": f"{tag}:live",
        "dedupe_ttl_seconds": 3600, "ops_flags_key": f"{tag}:flags",
        "heartbeat_prefix": f"{tag}:hb:", "heartbeat_seconds": 0.2,
        # A worker catching up after a restart on a loaded 2-core machine can spend seconds in
        # one batch: 2 s killed it as hung (seen with other work on the machine).
        "heartbeat_ttl_seconds": 6,
    }  # fmt: skip
    root = config_with(tmp, {"serving_policy": {"redis": keys, **serving}})
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("ARCHIVE_PATH", str(cfg.paths.archive))
    return load_config(root, "dev"), tag


def _spec(
    base_spec: WorkerSpec, cfg: AppConfig, tmp: Path, bars_file: Path, **kw: Any
) -> WorkerSpec:
    from dataclasses import replace

    return replace(base_spec, config_root=str(cfg.config_root), root=str(tmp / "serving"),
                   bars_file=str(bars_file), **kw)  # fmt: skip


def _cleanup(client: redis.Redis, *patterns: str) -> None:
    keys = [k for p in patterns for k in client.scan_iter(match=p)]
    if keys:
        client.delete(*keys)


def _feeder(worker: Worker, path: Path) -> Callable[[list], None]:
    """Append bars to the worker's file and let it take all of them."""

    def feed(chunk: list) -> None:
        with path.open("ab") as fh:
            for b in chunk:
                fh.write((json.dumps(bar_message(b)) + "\n").encode())
        while worker.step():
            pass

    return feed


def _stream_ids(client: redis.Redis, stream: str) -> list[str]:
    return [f[b"id"].decode() for _, f in client.xrange(stream)]


def _outbox(tmp: Path, worker: str = "worker-0") -> list[dict[str, Any]]:
    box = Outbox(tmp / "serving" / "outbox" / f"{worker}.db")
    try:
        return [json.loads(p) for p in box.payloads()]
    finally:
        box.close()


def test_signals_reach_redis_once_and_in_order(base, tmp_path: Path, monkeypatch) -> None:
    cfg0, _, bars, spec0, reference = base
    cfg, tag = _redis_cfg(cfg0, tmp_path, redis_url(), monkeypatch)
    client = redis.Redis.from_url(redis_url())
    stream = cfg.serving.redis.signals_stream
    client.xgroup_create(stream, "ea", id="0", mkstream=True)
    received: list[str] = []
    ps = client.pubsub()
    ps.subscribe(cfg.serving.redis.channel)
    time.sleep(0.1)
    write_bars_file(tmp_path / "bars.jsonl", bars)
    try:
        Worker(_spec(spec0, cfg, tmp_path, tmp_path / "bars.jsonl"), cfg=cfg).run()
        deadline = time.monotonic() + 10
        while len(received) < len(reference) and time.monotonic() < deadline:
            msg = ps.get_message(timeout=0.5)
            if msg and msg["type"] == "message":
                received.append(json.loads(msg["data"])["id"])
        ref_ids = [s["id"] for s in reference]
        assert _stream_ids(client, stream) == ref_ids
        assert received == ref_ids
        group = client.xreadgroup("ea", "ea-1", {stream: ">"}, count=100_000)
        assert [f[b"id"].decode() for _, f in group[0][1]] == ref_ids
        assert [s["id"] for s in _outbox(tmp_path)] == ref_ids
        assert (
            json.loads(client.get(f"{tag}:hb:worker-0"))["model_version"]
            == spec0.model_folder.split("/")[-1]
        )
    finally:
        ps.close()
        _cleanup(client, f"{tag}:*")


def test_redis_away_then_back_loses_and_repeats_nothing(base, tmp_path: Path, monkeypatch) -> None:
    cfg0, _, bars, spec0, reference = base
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        cfg, _ = _redis_cfg(cfg0, tmp_path, server.url, monkeypatch)
        path = tmp_path / "bars.jsonl"
        thirds = [bars[: len(bars) // 3], bars[len(bars) // 3 : 2 * len(bars) // 3],
                  bars[2 * len(bars) // 3 :]]  # fmt: skip
        worker = Worker(_spec(spec0, cfg, tmp_path, path), cfg=cfg)
        feed = _feeder(worker, path)

        feed(thirds[0])
        server.stop()  # Redis goes away
        feed(thirds[1])
        box = Outbox(tmp_path / "serving" / "outbox" / "worker-0.db")
        waiting = box.count("delivered")
        box.close()
        assert waiting > 0  # kept in the outbox meanwhile
        server.start()  # back, with what it had (append-only file)
        feed(thirds[2])
        worker.run()
        client = redis.Redis.from_url(server.url)
        ids = _stream_ids(client, cfg.serving.redis.signals_stream)
        assert ids == [s["id"] for s in reference]  # all, in order, once
        assert [s["id"] for s in _outbox(tmp_path)] == ids
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_dead_or_hung_worker_is_restarted_and_nothing_is_lost_or_repeated(
    base, tmp_path: Path, monkeypatch, how: str
) -> None:
    cfg0, _, bars, spec0, reference = base
    workers = {"pairs_per_worker": 5, "restart_delay_seconds": 0.2, "max_restarts_per_hour": 5,
               "checkpoint_every_seconds": 0.05}  # fmt: skip
    cfg, tag = _redis_cfg(cfg0, tmp_path, redis_url(), monkeypatch, workers=workers)
    client = redis.Redis.from_url(redis_url())
    # The bars arrive slowly, so that the kill falls in the middle of the run.
    path = tmp_path / "bars.jsonl"
    path.write_bytes(b"")
    spec = _spec(spec0, cfg, tmp_path, path, exit_when_idle_seconds=3.0)
    sup = Supervisor(cfg, [spec])
    stop = threading.Event()

    def feed() -> None:
        with path.open("ab") as fh:
            for i, b in enumerate(bars):
                fh.write((json.dumps(bar_message(b)) + "\n").encode())
                fh.flush()
                if i % 20 == 0:
                    time.sleep(0.02)

    killed: list[int] = []

    def killer() -> None:
        box_path = tmp_path / "serving" / "outbox" / "worker-0.db"
        while not stop.is_set():
            if box_path.exists():
                try:
                    box = Outbox(box_path)
                    n = box.count()
                    box.close()
                except Exception:
                    n = 0
                p = sup.slots[0].process
                if n > len(reference) // 4 and p is not None and p.is_alive():
                    # SIGSTOP: alive but silent, as a hung worker; the supervisor must notice.
                    sig = signal.SIGKILL if how == "killed" else signal.SIGSTOP
                    os.kill(p.pid, sig)  # type: ignore[arg-type]
                    killed.append(n)
                    return
            time.sleep(0.01)

    feeder = threading.Thread(target=feed)
    k = threading.Thread(target=killer)
    try:
        sup_thread = threading.Thread(target=sup.run, args=(lambda: False,),
                                      kwargs={"poll_seconds": 0.1})  # fmt: skip
        sup_thread.start()
        feeder.start()
        k.start()
        feeder.join()
        sup_thread.join(180)
        stop.set()
        k.join()
        assert killed, "the worker was never stopped mid-run"
        assert any("exited with -9" in e for e in sup.events)
        deaths = [e for e in sup.events if "exited with -9" in e or "stopped beating" in e]
        if how == "hung":
            assert any("stopped beating" in e for e in deaths), sup.events
        else:  # seen dead at once; a restarted worker starved later may still be killed as hung
            assert "exited with -9" in deaths[0] and "stopped beating" not in deaths[0], deaths
        ids = _stream_ids(client, cfg.serving.redis.signals_stream)
        ref_ids = [s["id"] for s in reference]
        assert len(ids) == len(set(ids)), "a signal was delivered twice"
        assert set(ids) == set(ref_ids), f"lost {len(set(ref_ids) - set(ids))}"
        assert ids == ref_ids
        assert _outbox(tmp_path) == reference
    finally:
        stop.set()
        sup.stop()
        _cleanup(client, f"{tag}:*")


def test_malformed_bars_on_the_stream_are_counted_and_skipped(
    base, tmp_path: Path, monkeypatch
) -> None:
    cfg0, _, bars, spec0, reference = base
    prefix = f"test:{uuid.uuid4().hex[:8]}:bars:"
    source = {"kind": "redis", "stream_prefix": prefix, "file": "unused.jsonl", "block_ms": 50,
              "batch_bars": 512}  # fmt: skip
    cfg, tag = _redis_cfg(cfg0, tmp_path, redis_url(), monkeypatch, bar_source=source)
    client = redis.Redis.from_url(redis_url())
    good = bars[:120]
    bad = [
        {"symbol": "XAU/USD", "ts": "not a time", "open": "1", "high": "1", "low": "1",
         "close": "1", "volume": "1"},
        {"symbol": "XAU/USD", "ts": "2024-01-01T00:00:00Z", "open": "1"},
        {"symbol": "XAU/USD", "ts": "2024-01-01T00:00:00Z", "open": "5", "high": "1",
         "low": "2", "close": "3", "volume": "1"},
        {"symbol": "NOPE/USD", "ts": "2024-01-01T00:00:00Z", "open": "1", "high": "1",
         "low": "1", "close": "1", "volume": "1"},
    ]  # fmt: skip
    try:
        for i, b in enumerate(good):
            client.xadd(f"{prefix}{b.symbol}", bar_message(b))  # type: ignore[arg-type]
            if i == 60:
                for fields in bad:
                    client.xadd(f"{prefix}XAU/USD", fields)
        spec = _spec(spec0, cfg, tmp_path, tmp_path / "unused", exit_when_idle_seconds=0.5)
        worker = Worker(spec, cfg=cfg)
        counts = worker.run()
        assert counts["refused:malformed"] == 2
        assert counts["refused:ohlc_inconsistent"] == 1
        assert counts["refused:unknown_symbol"] == 1
        made = _outbox(tmp_path)
        assert made
        for pair in {s["pair_id"] for s in made}:  # each pair's signals: the reference's first
            mine = [s["id"] for s in made if s["pair_id"] == pair]
            assert mine == [s["id"] for s in reference if s["pair_id"] == pair][: len(mine)]
    finally:
        _cleanup(client, f"{tag}:*", f"{prefix}*")


@pytest.mark.parametrize(
    "flags",
    [
        OpsFlags(global_halt=True),
        OpsFlags(flatten_pairs=frozenset({"XAU_XAG", "EUR_GBP", "BTC_ETH"})),
        OpsFlags(leverage_scale=0.5),
    ],
    ids=["global_halt", "flatten", "leverage"],
)
def test_ops_flags_are_honoured_on_every_bar(
    base, tmp_path: Path, monkeypatch, flags: OpsFlags
) -> None:
    cfg0, _, bars, spec0, reference = base
    cfg, tag = _redis_cfg(cfg0, tmp_path, redis_url(), monkeypatch)
    client = redis.Redis.from_url(redis_url())
    write_flags(client, cfg.serving.redis.ops_flags_key, tmp_path / "x", flags)
    write_bars_file(tmp_path / "bars.jsonl", bars)
    try:
        Worker(_spec(spec0, cfg, tmp_path, tmp_path / "bars.jsonl"), cfg=cfg).run()
        got = _outbox(tmp_path)
        assert [s["id"] for s in got] == [s["id"] for s in reference]
        ref_entries = [s for s in reference if s["metadata"]["action"] == "entry"]
        assert ref_entries, "the reference replay has no entry to block"
        if flags.leverage_scale < 1:
            for g, r in zip(got, reference, strict=True):
                assert g["position_scale"] == r["position_scale"] * 0.5
                assert g["metadata"]["core_policy"]["leverage_scale"] == 0.5
        else:
            assert not [s for s in got if s["metadata"]["action"] == "entry"]
            halted = {s["id"] for s in got if s["metadata"]["reason"] == "halted"}
            assert {s["id"] for s in ref_entries} <= halted
    finally:
        _cleanup(client, f"{tag}:*")


def test_stale_bars_are_refused_and_counted(base, tmp_path: Path) -> None:
    cfg, _, bars, spec0, _ = base
    write_bars_file(tmp_path / "bars.jsonl", bars)
    # Live (wall clock): the replayed bars closed long ago.
    spec = _spec(spec0, cfg, tmp_path, tmp_path / "bars.jsonl", replay=False)
    counts = Worker(spec, cfg=cfg).run()
    assert counts["refused:stale_bar"] > BARS
    assert not any(k.startswith("signal:") for k in counts)
    assert NO_FLAGS.leverage_scale == 1.0


def test_a_damaged_deployed_model_falls_back_to_the_previous_one(base, tmp_path: Path) -> None:
    cfg, folder, _, _, _ = base
    # Version names as the registry takes them; a θ inside theta_search_range (the deployed
    # path holds a registry row's θ to it).
    V1, V2, theta = "20260101_0000_v1", "20260201_0000_v2", (0.7, 0.3)
    models = tmp_path / "models"
    for name in (V1, V2):
        shutil.copytree(folder, models / name)
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "artifacts")
    for name in (V1, V2):
        reg.register(models / name, actor="test", notes="serving test", status="candidate")
        reg.transition(name, "approved", actor="test", notes="gates passed")
        reg.transition(name, "deployed", actor="test", notes="deploy", theta=theta)
    # A damaged served file is put back from the artifact store: still v2.
    with (models / V2 / "ai1.lgbm.txt").open("ab") as fh:
        fh.write(b"\n# damaged\n")
    served = deployed_model(cfg, reg)
    assert (served.version, served.why) == (V2, "deployed")
    # Damaged in both places: the version deployed before it is served, and an alert recorded.
    for root in (models, tmp_path / "artifacts"):
        with (root / V2 / "ai2.lgbm.txt").open("ab") as fh:
            fh.write(b"\n# damaged\n")
    served = deployed_model(cfg, reg)
    assert served.version == V1
    assert served.why.startswith("fallback")
    assert served.theta == theta
    assert [a["code"] for a in reg.alerts()] == ["CORE_SERVING_FALLBACK"]


def test_mlcore_serve_on_redis_delivers_the_replay(
    base, tmp_path: Path, monkeypatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from typer.testing import CliRunner

    from mlcore.cli import app

    cfg0, folder, _, _, reference = base
    cfg, tag = _redis_cfg(cfg0, tmp_path, redis_url(), monkeypatch)
    client = redis.Redis.from_url(redis_url())
    # The demo's version is rejected by its gates (a year of synthetic market): served on purpose.
    args = ["serve", "--model", str(folder), "--replay-last", str(BARS), "--exit-when-idle", "1",
            "--force-rejected", "--config-root", str(cfg.config_root)]  # fmt: skip
    try:
        result = CliRunner().invoke(app, args)
        out = result.output + capfd.readouterr().out
        assert result.exit_code == 0, out
        assert f"signals {len(reference)} (" in out.replace("\n", " ")
        # Review: the replay's signals (valid_until long past) went to the live stream, where an
        # executor could take them as live. Nothing of a replay reaches a live name.
        live = cfg.serving.redis
        assert client.xlen(live.signals_stream) == 0
        assert not list(client.scan_iter(match=f"{live.heartbeat_prefix}worker-*"))
        assert not list(client.scan_iter(match=f"{live.signals_stream}:seen:*"))
        replay = f"{live.signals_stream}:replay"
        assert f"signals on Redis stream {replay} (a replay" in out.replace("\n", " ")
        signals = [json.loads(f[b"signal"]) for _, f in client.xrange(replay)]
        now = datetime.now(UTC)
        assert all(datetime.fromisoformat(s["valid_until"]) < now for s in signals)
        # θ differs from the reference's (the version's own), so compare what does not depend on it.
        assert [s["id"] for s in signals] == [s["id"] for s in reference]
        assert [s["risk_score"] for s in signals] == [s["risk_score"] for s in reference]
    finally:
        _cleanup(client, f"{tag}:*")
    bad = CliRunner().invoke(app, ["serve", "--bars", "kafka", "--model", str(folder),
                                   "--config-root", str(cfg.config_root)])  # fmt: skip
    text = bad.output + capfd.readouterr().err
    assert bad.exit_code == 2 and "--bars 'kafka' is not one of 'redis', 'file'" in text


def test_a_halt_set_mid_run_applies_from_the_next_bars(base, tmp_path: Path, monkeypatch) -> None:
    cfg0, _, bars, spec0, reference = base
    cfg, tag = _redis_cfg(cfg0, tmp_path, redis_url(), monkeypatch)
    client = redis.Redis.from_url(redis_url())
    path = tmp_path / "bars.jsonl"
    path.write_bytes(b"")
    worker = Worker(_spec(spec0, cfg, tmp_path, path), cfg=cfg)
    feed = _feeder(worker, path)

    try:
        half = len(bars) // 2
        feed(bars[:half])
        before = sum(n for k, n in worker.tally.items() if k.startswith("signal:"))
        write_flags(client, cfg.serving.redis.ops_flags_key, tmp_path / "x",
                    OpsFlags(global_halt=True))  # fmt: skip
        feed(bars[half:])
        worker.run()
        got = _outbox(tmp_path)
        assert [s["id"] for s in got] == [s["id"] for s in reference]
        assert got[:before] == reference[:before]  # before the halt: exactly as without it
        after = got[before:]
        assert after and all(s["metadata"]["core_policy"]["halted"] for s in after)
        assert not [s for s in after if s["metadata"]["action"] == "entry"]
    finally:
        _cleanup(client, f"{tag}:*")
