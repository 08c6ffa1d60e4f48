"""Serving under hostile input, on the demo's model: a replay with garbage interleaved (random
bytes, huge lines, bars from the future, absurd and NaN prices, deep JSON, non-UTF-8, unknown
symbols) gives every valid pair-bar exactly its clean-run signal while each garbage message is
dead-lettered with its reason (outbox and the real Redis); a message the worker dies on twice
is skipped, dead-lettered as poison and alerted."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from mlcore.config import AppConfig, load_config
from mlcore.demo import DemoResult
from mlcore.registry import Alerts, database_url, make_engine
from mlcore.serving import (
    OpsFlags,
    Outbox,
    PairRuntime,
    Worker,
    WorkerSpec,
    bar_message,
    replay_bars,
    write_bars_file,
    write_flags,
)
from mlcore.signals import iso_utc
from tests.conftest import config_with, redis_url

BARS = 200
THETA = (0.55, 0.5)
Y2100_NS = 4_102_444_800_000_000_000


@pytest.fixture(scope="module")
def clean(demo_run: tuple[AppConfig, DemoResult], tmp_path_factory: pytest.TempPathFactory):
    """The demo's model, replayed bars and the signals a worker makes of them (the reference)."""
    cfg, result = demo_run
    assert result.training is not None
    pairs = tuple(p.pair_id for p in cfg.universe.pairs)
    bars, warm = replay_bars(cfg, list(pairs), BARS)
    root = tmp_path_factory.mktemp("clean")
    write_bars_file(root / "bars.jsonl", bars)
    spec = WorkerSpec("worker-0", pairs, str(cfg.config_root), cfg.env_name,
                      str(result.training.folder), THETA, replay=True, warm_until_ns=warm,
                      exit_when_idle_seconds=0.2, root=str(root / "serving"),
                      bars_file=str(root / "bars.jsonl"))  # fmt: skip
    counts = Worker(spec, cfg=cfg).run()
    assert not [k for k in counts if k.startswith("refused:") and "warmup" not in k], counts
    reference = _signals(root)
    assert len(reference) > BARS
    return cfg, bars, spec, reference


def _signals(root: Path) -> list[dict[str, Any]]:
    box = Outbox(root / "serving" / "outbox" / "worker-0.db")
    try:
        return [json.loads(p) for p in box.payloads()]
    finally:
        box.close()


def _dead(root: Path) -> list[tuple[Any, ...]]:
    box = Outbox(root / "serving" / "outbox" / "worker-0.db")
    try:
        return box.dead_letters()
    finally:
        box.close()


def _redis_config(
    cfg0: AppConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[AppConfig, Path, str]:
    """The demo configuration with Redis key names of this test's own (tag), REDIS_URL set."""
    tag = f"test:{uuid.uuid4().hex[:8]}"
    keys = {"signals_stream": f"{tag}:signals", "channel": f"{tag}:live",
            "ops_flags_key": f"{tag}:flags", "heartbeat_prefix": f"{tag}:hb:",
            "dead_letter_stream": f"{tag}:dead", "stream_maxlen": 100000,
            "dedupe_ttl_seconds": 3600, "heartbeat_seconds": 5,
            "heartbeat_ttl_seconds": 15}  # fmt: skip
    root = config_with(tmp_path, {"serving_policy": {"redis": keys}})
    monkeypatch.setenv("REDIS_URL", redis_url())
    monkeypatch.setenv("ARCHIVE_PATH", str(cfg0.paths.archive))
    return load_config(root, "dev"), root, tag


def _garbage(rng: random.Random, real: dict[str, str]) -> tuple[bytes, str]:
    """One garbage line and the reason it must be refused for."""
    kind = rng.randrange(9)
    if kind == 0:
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        return b"\x00" + noise.replace(b"\n", b"\xff"), "malformed"
    if kind == 1:
        return json.dumps({**real, "symbol": "X" * 50_000}).encode(), "too_large"
    if kind == 2:
        return json.dumps({**real, "ts": str(Y2100_NS)}).encode(), "future"
    if kind == 3:  # the symbol's next bar time (the same time would be a duplicate)
        absurd = {k: "1e300" for k in ("open", "high", "low", "close")}
        nxt = str(int(real["ts"]) + 3_600_000_000_000)
        return json.dumps({**real, **absurd, "ts": nxt}).encode(), "bad_print"
    if kind == 4:
        return json.dumps({**real, "close": "NaN"}).encode(), "bad_price"
    if kind == 5:
        return b"[" * 2000 + b"]" * 2000, "malformed"
    if kind == 6:
        return json.dumps({**real, "symbol": "NOPE/USD"}).encode(), "unknown_symbol"
    if kind == 7:
        return b'{"symbol":"XAU/USD\xc3","ts":"2024-01-01T00:00:00Z"}', "malformed"
    return json.dumps({**real, "ts": "\u00b2"}).encode(), "malformed"


def test_garbage_among_the_bars_is_dead_lettered_and_changes_no_signal(
    clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg0, bars, spec0, reference = clean
    cfg, root, tag = _redis_config(cfg0, tmp_path, monkeypatch)
    client = redis.Redis.from_url(redis_url())
    rng = random.Random(16)  # noqa: S311 - test data, not a secret
    expected: list[str] = []
    path = tmp_path / "bars.jsonl"
    with path.open("wb") as fh:
        for i, bar in enumerate(bars):
            message = bar_message(bar)
            fh.write(json.dumps(message).encode() + b"\n")
            if rng.random() < 0.03 or i in (5, 6, 7):
                line, reason = _garbage(rng, message)
                fh.write(line + b"\n")
                expected.append(reason)
    assert len(set(expected)) >= 6, expected
    spec = replace(spec0, config_root=str(root), root=str(tmp_path / "serving"),
                   bars_file=str(path))  # fmt: skip
    try:
        counts = Worker(spec, cfg=cfg).run()
        got = _signals(tmp_path)
        assert [s["id"] for s in got] == [s["id"] for s in reference]
        assert got == reference  # every valid pair-bar: exactly its clean-run signal
        dead = _dead(tmp_path)
        assert sorted(d[4] for d in dead) == sorted(expected)
        for reason in set(expected):
            assert counts[f"refused:{reason}"] == expected.count(reason), (reason, counts)
        assert all(d[5] and len(d[6]) <= cfg.serving.bar_source.max_message_bytes + 1
                   for d in dead)  # fmt: skip
        stream = client.xrange(f"{tag}:dead")
        assert sorted(f[b"reason"].decode() for _, f in stream) == sorted(expected)
        assert {f[b"id"].decode() for _, f in stream} == {d[1] for d in dead}
        # A second worker on the same file (a restart, or a second worker of `mlcore serve`)
        # adds no dead letter to Redis: each message's letter is sent once.
        again = replace(spec, root=str(tmp_path / "again"))
        Worker(again, cfg=cfg).run()
        assert len(client.xrange(f"{tag}:dead")) == len(stream)
    finally:
        keys_left = list(client.scan_iter(match=f"{tag}:*"))
        if keys_left:
            client.delete(*keys_left)


def test_a_message_the_worker_dies_on_twice_is_skipped_dead_lettered_and_alerted(
    clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, bars, spec0, reference = clean
    spec = replace(spec0, root=str(tmp_path / "serving"), bars_file=str(tmp_path / "bars.jsonl"))
    write_bars_file(tmp_path / "bars.jsonl", bars)
    victim = reference[len(reference) // 2]
    pair, bar_time = victim["pair_id"], victim["metadata"]["bar_ts"]
    bar_ns = next(b.ts_ns for b in bars if iso_utc(b.ts_ns) == bar_time)
    real = PairRuntime.on_bar

    def crashing(self: PairRuntime, ts_ns: int, *args: Any, **kw: Any) -> Any:
        if self.setup.pair_id == pair and ts_ns == bar_ns:
            raise RuntimeError("a bug that this one bar sets off")
        return real(self, ts_ns, *args, **kw)

    monkeypatch.setattr(PairRuntime, "on_bar", crashing)
    alerts = Alerts(make_engine(database_url(cfg)))
    before = len(alerts.recent("CORE_SERVING_POISON"))
    for _ in range(2):  # the worker dies, is restarted, dies again on the same message
        with pytest.raises(RuntimeError, match="sets off"):
            Worker(spec, cfg=cfg).run()
    counts = Worker(spec, cfg=cfg).run()  # the third start skips it
    assert counts["refused:poison"] == 1
    [letter] = _dead(tmp_path)
    assert letter[4] == "poison" and "died working on it 2 times" in letter[5]
    got = _signals(tmp_path)
    made = {(s["pair_id"], s["metadata"]["bar_ts"]) for s in got}
    assert made == {(s["pair_id"], s["metadata"]["bar_ts"]) for s in reference} - {(pair, bar_time)}
    others = [s for s in reference if s["pair_id"] != pair]
    assert [s for s in got if s["pair_id"] != pair] == others
    assert len(alerts.recent("CORE_SERVING_POISON")) == before + 1


def test_a_halt_outlives_the_loss_of_its_document_across_a_worker_restart(
    clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarted without persistence while the worker was down: the worker's outbox
    still holds the halt, so no entry is made, and the document is written back."""
    cfg0, bars, spec0, reference = clean
    cfg, root, tag = _redis_config(cfg0, tmp_path, monkeypatch)
    client = redis.Redis.from_url(redis_url())
    path = tmp_path / "bars.jsonl"
    half = len(bars) // 2
    spec = replace(spec0, config_root=str(root), root=str(tmp_path / "serving"),
                   bars_file=str(path))  # fmt: skip
    late = {b.ts_ns for b in bars[half:]}
    assert any(s["metadata"]["action"] == "entry" and _ns(s) in late for s in reference)
    try:
        write_flags(client, cfg.serving.redis.ops_flags_key, tmp_path / "x",
                    OpsFlags(global_halt=True))  # fmt: skip
        write_bars_file(path, bars[:half])
        Worker(spec, cfg=cfg).run()
        client.delete(cfg.serving.redis.ops_flags_key)  # the store lost it while we were down
        with path.open("ab") as fh:
            for b in bars[half:]:
                fh.write(json.dumps(bar_message(b)).encode() + b"\n")
        Worker(spec, cfg=cfg).run()
        got = _signals(tmp_path)
        assert [s["id"] for s in got] == [s["id"] for s in reference]
        assert not [s for s in got if s["metadata"]["action"] == "entry"]
        assert all(s["metadata"]["core_policy"]["halted"] for s in got)
        kept = client.get(cfg.serving.redis.ops_flags_key)
        assert kept is not None and json.loads(kept)["global_halt"] is True
    finally:
        keys_left = list(client.scan_iter(match=f"{tag}:*"))
        if keys_left:
            client.delete(*keys_left)


def _ns(signal: dict[str, Any]) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(signal["metadata"]["bar_ts"]).timestamp()) * 10**9


def test_a_replaced_bars_file_dead_letters_its_own_garbage(clean, tmp_path: Path) -> None:
    """Review finding: a message was known by its file and offset only, so garbage at the same
    offset of a file replaced by a shorter one was taken for the old file's letter (the outbox
    kept the first and dropped the second) and a death on the old message was blamed on it."""
    cfg, bars, spec0, _ = clean
    path = tmp_path / "bars.jsonl"
    spec = replace(spec0, root=str(tmp_path / "serving"), bars_file=str(path))
    first, second = b"\x00garbage-one", b"\x00garbage-two"
    with path.open("wb") as fh:
        fh.write(first + b"\n")
        for b in bars[:20]:
            fh.write(json.dumps(bar_message(b)).encode() + b"\n")
    Worker(spec, cfg=cfg).run()
    path.write_bytes(second + b"\n")  # rotated: shorter, its garbage at the same offset
    Worker(spec, cfg=cfg).run()
    dead = _dead(tmp_path)
    assert sorted(d[6] for d in dead) == [first, second]
    assert dead[0][3] == dead[1][3] and dead[0][1] != dead[1][1]  # one position, two ids


def test_damaged_checkpoint_values_are_started_afresh_without_a_crash_or_a_repeat(
    clean, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every part of a worker's checkpoint damaged between two runs (as no worker writes it):
    the next run logs each part it cannot use, starts it afresh and goes on; bars read again
    make no second signal, and the signals are the clean run's."""
    cfg, bars, spec0, reference = clean
    path = tmp_path / "bars.jsonl"
    spec = replace(spec0, root=str(tmp_path / "serving"), bars_file=str(path))
    half = len(bars) // 2
    write_bars_file(path, bars[:half])
    Worker(spec, cfg=cfg).run()
    box = Outbox(tmp_path / "serving" / "outbox" / "worker-0.db")
    try:
        legs = sorted({s for p in cfg.universe.pairs for s in (p.leg_a, p.leg_b)})
        damaged = {"deaths": '{"x": [1]}', "positions": "[[", "recent": '{"XAU/USD": 7}',
                   "tally": "1e999999", "fx": '{"EUR/USD": "x"}',
                   **{f"guard:{s}": '{"close": -1}' for s in legs}}  # fmt: skip
        states = {pid: (v, b"\xff not an engine", "{") for pid, (v, _, _) in box.states().items()}
        assert states and set(damaged) <= set(box.kv()) | {"deaths", "fx"}
        box.commit([], states, damaged)
    finally:
        box.close()
    with path.open("ab") as fh:
        for b in bars[half:]:
            fh.write(json.dumps(bar_message(b)).encode() + b"\n")
    Worker(spec, cfg=cfg).run()
    text = caplog.text
    for part in ("'deaths'", "'positions'", "'recent'", "'tally'", "saved DQ guard state",
                 "saved state not usable"):  # fmt: skip
        assert part in text, part
    got = _signals(tmp_path)
    keys = [(s["pair_id"], s["metadata"]["bar_ts"]) for s in got]
    assert len(keys) == len(set(keys))  # nothing signalled twice
    # The pairs warm anew on the catalog and, the read positions lost, take the file from its
    # start: they decide every bar again as the clean run did.
    assert got == reference


def test_a_worker_restarted_after_a_swap_refuses_the_swapped_model(clean, tmp_path: Path) -> None:
    """Review finding: `serve` checked the model against the registry at start, but a worker
    (re)started later trusted the folder's own checksums.json; a file swapped and the file
    rewritten after start-up was loaded. A worker now checks against the recorded sums."""
    import hashlib
    import shutil

    from mlcore.serving import ModelUnusable

    cfg, bars, spec0, _ = clean
    folder = tmp_path / Path(spec0.model_folder).name
    shutil.copytree(spec0.model_folder, folder)
    sums_path = folder / "checksums.json"
    recorded = tuple(sorted(json.loads(sums_path.read_bytes()).items()))
    swapped = (folder / "ai3.lgbm.txt").read_bytes()  # a real model, in the wrong place
    (folder / "ai1.lgbm.txt").write_bytes(swapped)
    doc = json.loads(sums_path.read_bytes())
    doc["ai1.lgbm.txt"] = hashlib.sha256(swapped).hexdigest()
    sums_path.write_text(json.dumps(doc))
    write_bars_file(tmp_path / "bars.jsonl", bars[:10])
    spec = replace(spec0, root=str(tmp_path / "serving"), bars_file=str(tmp_path / "bars.jsonl"),
                   model_folder=str(folder))  # fmt: skip
    Worker(spec, cfg=cfg)  # the folder's own (rewritten) checksums.json vouches for the swap
    with pytest.raises(ModelUnusable, match=r"ai1\.lgbm\.txt: checksum mismatch"):
        Worker(replace(spec, model_checksums=recorded), cfg=cfg)
