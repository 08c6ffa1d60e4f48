"""Hot swap, with a real worker process: a deployment, a model rollback, a θ rollback and a
config version reach the running worker without a restart (same PID), the pair holding an open
position keeps it, the signals after each swap carry the new version and params, none is lost
or repeated; a damaged target is refused and the old version keeps serving. The second version
is the demo's, copied under another name with another θ and decision record (no training)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlcore.config import AppConfig, load_config
from mlcore.demo import DemoResult
from mlcore.execution import DECISION_RECORD, record_bytes
from mlcore.ops import (
    OpsError,
    announce_config_version,
    notify_serving,
    rollback_model,
    rollback_theta,
    theta_records,
)
from mlcore.registry import Registry, registry_for
from mlcore.serving import (
    Outbox,
    ServingTarget,
    Supervisor,
    Worker,
    WorkerSpec,
    bar_message,
    deployed_model,
    read_target,
    replay_bars,
    serving_dir,
    write_bars_file,
    write_target,
)
from mlcore.serving._serve import _Models
from tests.conftest import config_with, postgres_url
from tests.e2e.conftest import linked_archive

BARS = 600
THETA_A = (0.55, 0.5)  # loose enough that the window holds entries (range widened below)
THETA_A0 = (0.58, 0.48)  # A's θ record before THETA_A: where a θ rollback goes
THETA_B = (0.56, 0.5)
WIDE = {"theta_search_range": {"theta1": [0.0, 1.0], "theta2": [0.0, 1.0]}}
FAST = {"redis": {"heartbeat_seconds": 0.2, "heartbeat_ttl_seconds": 60}}


def _second_name(version: str) -> str:
    """Another valid version name, one minute later."""
    day, hm, code = version.split("_")[:3]
    h, m = int(hm[:2]), int(hm[2:])
    m += 1
    h, m = (h + m // 60) % 24, m % 60
    return f"{day}_{h:02d}{m:02d}_{code}"


def _archive(
    demo: AppConfig, folder: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[AppConfig, str, str]:
    """An archive of this test's own (the demo's catalog linked, its models copied, a registry
    of its own): version A is the demo's, version B a copy with θ_initial changed in its
    decision record (so another params_sha256). Returns the configuration and both names."""
    archive = linked_archive(demo, tmp)
    monkeypatch.setenv("ARCHIVE_PATH", str(archive))
    root = config_with(tmp, {"core_policy": WIDE, "serving_policy": FAST})
    cfg = load_config(root, "dev")
    a, b = folder.name, _second_name(folder.name)
    shutil.copytree(folder, cfg.paths.models / a)
    shutil.copytree(folder, cfg.paths.models / b)
    record = json.loads((folder / DECISION_RECORD).read_bytes())
    record["theta_initial"] = list(THETA_B)
    body = record_bytes(record)
    (cfg.paths.models / b / DECISION_RECORD).write_bytes(body)
    sums = json.loads((cfg.paths.models / b / "checksums.json").read_text())
    sums[DECISION_RECORD] = hashlib.sha256(body).hexdigest()
    (cfg.paths.models / b / "checksums.json").write_text(json.dumps(sums))
    return cfg, a, b


def _deploy(reg: Registry, cfg: AppConfig, version: str, thetas: list[tuple[float, float]]) -> None:
    reg.register(cfg.paths.models / version, actor="test", notes="hot swap test")
    steps = ["candidate", "approved", "deployed"]
    given = [None] * (len(steps) - len(thetas)) + thetas
    for to, theta in zip(steps, given, strict=True):
        reg.transition(version, to, actor="test", notes="hot swap test", theta=theta)


def _read(root: Path) -> list[dict[str, Any]]:
    db = root / "outbox" / "worker-0.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT payload FROM signals ORDER BY seq")]
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


def _beat(root: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((root / "heartbeats" / "worker-0.json").read_text()))
    except (OSError, ValueError):
        return {}


def _until(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _open_position(reference: list[dict[str, Any]]) -> tuple[str, str, int]:
    """A pair, the bar time after its entry and the number of bars until its exit (at least
    six: the swaps happen while it is open)."""
    by_pair: dict[str, list[dict[str, Any]]] = {}
    for s in reference:
        by_pair.setdefault(s["pair_id"], []).append(s)
    for pid, signals in by_pair.items():
        for i, s in enumerate(signals):
            if s["metadata"]["action"] != "entry":
                continue
            for j in range(i + 1, len(signals)):
                if signals[j]["metadata"]["action"] == "exit":
                    if j - i >= 6 and i + 1 < len(signals):
                        return pid, signals[i + 1]["metadata"]["bar_ts"], j - i
                    break
    pytest.fail("no entry held six bars or more in the replay window")


@pytest.fixture(scope="module")
def demo_model(demo_run: tuple[AppConfig, DemoResult]) -> tuple[AppConfig, Path]:
    cfg, result = demo_run
    assert result.training is not None
    return cfg, result.training.folder


def test_a_running_worker_swaps_versions_and_theta_without_a_restart(
    demo_model: tuple[AppConfig, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, a, b = _archive(*demo_model, tmp_path, monkeypatch)
    reg = registry_for(cfg)
    _deploy(reg, cfg, a, [THETA_A0, THETA_A])
    pairs = tuple(p.pair_id for p in cfg.universe.pairs)
    bars, warm = replay_bars(cfg, list(pairs), BARS)
    # The reference: version A at THETA_A over every bar, in this process.
    ref_root = tmp_path / "ref"
    write_bars_file(ref_root / "bars.jsonl", bars)
    served = deployed_model(cfg, reg)
    assert (served.version, served.theta) == (a, THETA_A)
    base = WorkerSpec("worker-0", pairs, str(cfg.config_root), cfg.env_name, replay=True,
                      warm_until_ns=warm, aggregate=False, bar_source="file",
                      **served.spec_fields())  # fmt: skip
    ref_spec = replace(base, root=str(ref_root / "serving"), exit_when_idle_seconds=0.2,
                       bars_file=str(ref_root / "bars.jsonl"))  # fmt: skip
    Worker(ref_spec, cfg=cfg).run()
    box = Outbox(ref_root / "serving" / "outbox" / "worker-0.db")
    reference = [json.loads(p) for p in box.payloads()]
    box.close()
    pid_pair, after_entry, _ = _open_position(reference)
    times = sorted({s["metadata"]["bar_ts"] for s in reference})
    expected = {t: {s["pair_id"] for s in reference if s["metadata"]["bar_ts"] == t} for t in times}
    cut = times.index(after_entry)

    # The live worker: a real process, fed the bars a bar time at a time around the swaps.
    root = serving_dir(cfg)
    feed = root / "bars.jsonl"
    spec = replace(base, root=str(root), bars_file=str(feed))
    times_ns = [pd.Timestamp(t).value for t in times]
    lines = [json.dumps(bar_message(x), sort_keys=True) + "\n" for x in bars]

    def feed_until(k: int) -> None:
        with feed.open("a") as fh:
            while state["fed"] < len(bars) and bars[state["fed"]].ts_ns <= times_ns[k]:
                fh.write(lines[state["fed"]])
                state["fed"] += 1
        _until(
            f"signals of {times[k]}",
            lambda: (
                expected[times[k]]
                <= {s["pair_id"] for s in _read(root) if s["metadata"]["bar_ts"] == times[k]}
            ),
        )

    state = {"fed": 0}
    root.mkdir(parents=True, exist_ok=True)
    feed.write_text("")
    sup = Supervisor(cfg, [spec])
    models = _Models(cfg, served, named=False)
    sup.start()
    try:
        feed_until(cut)
        pid = _until("the first heartbeat", lambda: _beat(root).get("pid"))
        assert pid == sup.slots[0].process.pid  # type: ignore[union-attr]

        def swapped(seq: int) -> dict[str, Any]:
            models.on_tick(sup)
            target = read_target(root)
            assert target is not None and target.seq == seq, target
            return _until(f"target #{seq}", lambda: (b_ := _beat(root)).get("target_seq") == seq
                          and b_)  # fmt: skip

        # 1. a new deployment (B): hot swap.
        seq0 = read_target(root).seq  # type: ignore[union-attr]
        _deploy(reg, cfg, b, [THETA_B])
        notify_serving(cfg, "model_deployed", model_version=b,
                       model_path=str(cfg.paths.models / b), theta=THETA_B)  # fmt: skip
        beat = swapped(seq0 + 1)
        assert (beat["model_version"], beat["theta"], beat["pid"]) == (b, list(THETA_B), pid)
        feed_until(cut + 1)
        # 2. the model rolled back (A again).
        done = rollback_model(cfg, actor="alice", role="admin", reason="B misbehaves")
        assert (done.model_before, done.model_after, done.theta_after) == (b, a, THETA_A)
        act = reg.actions(action="ops.rollback")[-1]
        assert (act.action_id, act.before, act.after) == (
            done.action_id, {"model_version": b, "theta": list(THETA_B)},
            {"model_version": a, "theta": list(THETA_A)})  # fmt: skip
        beat = swapped(seq0 + 2)
        assert (beat["model_version"], beat["theta"], beat["pid"]) == (a, list(THETA_A), pid)
        feed_until(cut + 2)
        # 3. θ rolled back (A's previous θ record).
        assert theta_records(reg, a) == [THETA_A0, THETA_A]
        done = rollback_theta(cfg, actor="alice", role="admin", reason="θ too loose")
        assert (done.theta_before, done.theta_after) == (THETA_A, THETA_A0)
        beat = swapped(seq0 + 3)
        assert (beat["theta"], beat["pid"]) == (list(THETA_A0), pid)
        feed_until(cut + 3)
        # 4. a config version applied: the worker reloads its configuration, same process.
        assert announce_config_version(cfg, "cfg-0002") == [str(root / "deployed.json")]
        beat = swapped(seq0 + 4)
        assert (beat["config_version"], beat["pid"]) == ("cfg-0002", pid)
        feed_until(cut + 4)
        # 5. a damaged target: refused, the worker keeps serving A.
        bad = tmp_path / "bad" / b
        shutil.copytree(cfg.paths.models / b, bad)
        with (bad / "ai2.lgbm.txt").open("ab") as fh:
            fh.write(b"\n# tampered\n")
        recorded = tuple(sorted(reg.get(b).checksums.items()))
        write_target(root, ServingTarget(seq0 + 5, b, str(bad), THETA_B, recorded))
        beat = _until("the refusal", lambda: (b_ := _beat(root)).get("refused_seq") == seq0 + 5
                      and b_)  # fmt: skip
        assert (beat["target_seq"], beat["model_version"], beat["pid"]) == (seq0 + 4, a, pid)
        assert reg.alerts("CORE_SERVING_SWAP_REFUSED")
        feed_until(len(times) - 1)
        assert sup.slots[0].process.is_alive() and sup.slots[0].process.pid == pid  # type: ignore[union-attr]
    finally:
        sup.stop()

    live = _read(root)
    # No signal lost or repeated: every (pair, bar) of the reference, once, in order.
    assert [(s["pair_id"], s["metadata"]["bar_ts"]) for s in live] == [
        (s["pair_id"], s["metadata"]["bar_ts"]) for s in reference
    ]
    shas = {s["model_version"]: s["metadata"]["params_sha256"] for s in live}
    assert len(set(shas.values())) == 2  # B's decision record is another one
    by_time = {t: [s for s in live if s["metadata"]["bar_ts"] == t] for t in times}
    phases = [(cut, a, THETA_A), (cut + 1, b, THETA_B), (cut + 2, a, THETA_A),
              (cut + 3, a, THETA_A0), (cut + 4, a, THETA_A0), (cut + 5, a, THETA_A0)]  # fmt: skip
    for k, version, theta in phases:
        for s in by_time[times[k]]:
            policy = s["metadata"]["core_policy"]
            assert (s["model_version"], (policy["theta1"], policy["theta2"])) == (version, theta)
    # The pair that held a position through the swaps keeps it: its next action is the exit.
    mine = [s for s in live if s["pair_id"] == pid_pair and s["metadata"]["bar_ts"] > after_entry]
    actions = [s["metadata"]["action"] for s in mine if s["metadata"]["action"] != "hold"]
    assert actions and actions[0] == "exit", actions[:3]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The embedded registry, or a fresh database on this machine's PostgreSQL (POSTGRES_URL)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    for url in postgres_url():
        monkeypatch.setenv("POSTGRES_URL", url.replace("+psycopg", ""))
        yield "postgres"


def test_rollbacks_check_first_and_are_recorded(
    demo_model: tuple[AppConfig, Path], backend: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cfg, a, b = _archive(*demo_model, tmp_path, monkeypatch)
    reg = registry_for(cfg)
    assert reg.engine.dialect.name == ("sqlite" if backend == "sqlite" else "postgresql")
    with pytest.raises(OpsError, match="no version is deployed") as no:
        rollback_model(cfg, actor="alice", role="admin", reason="test")
    assert no.value.code == "OPS_ROLLBACK_NO_TARGET"
    _deploy(reg, cfg, a, [THETA_A])
    with pytest.raises(OpsError) as first:
        rollback_theta(cfg, actor="alice", role="admin", reason="test")
    assert first.value.code == "OPS_ROLLBACK_NO_TARGET"
    with pytest.raises(OpsError) as out:
        rollback_theta(cfg, actor="alice", role="admin", reason="test", to=(1.5, 0.2))
    assert out.value.code == "OPS_ROLLBACK_THETA_INVALID"
    _deploy(reg, cfg, b, [THETA_B])
    with pytest.raises(OpsError) as wrong:
        rollback_model(cfg, actor="alice", role="admin", reason="test", to_version=b)
    assert wrong.value.code == "OPS_ROLLBACK_TARGET_MISMATCH" and a in wrong.value.message
    # A's served files and its archived copy damaged: the rollback would serve nothing.
    for f in (cfg.paths.models / a / "ai1.lgbm.txt", *cfg.paths.artifacts.rglob("ai1.lgbm.txt")):
        if a in str(f):
            f.write_bytes(f.read_bytes() + b"\n# tampered\n")
    with pytest.raises(OpsError) as damaged:
        rollback_model(cfg, actor="alice", role="admin", reason="test")
    assert damaged.value.code == "OPS_ROLLBACK_TARGET_UNUSABLE" and a in damaged.value.message
    assert reg.deployed().model_version == b  # type: ignore[union-attr]
    with pytest.raises(OpsError) as empty:
        rollback_model(cfg, actor="alice", role="admin", reason="  ")
    assert empty.value.code == "OPS_REQUEST_INVALID"
    # θ to a value named, then back: each a THETA_ROLLBACK row, the registry row changed.
    done = rollback_theta(cfg, actor="bob", role="admin", reason="tighter", to=(0.7, 0.3))
    assert (done.theta_before, done.theta_after) == (THETA_B, (0.7, 0.3))
    assert (reg.get(b).theta1, reg.get(b).theta2) == (0.7, 0.3)
    again = rollback_theta(cfg, actor="bob", role="admin", reason="back")
    assert again.theta_after == THETA_B and theta_records(reg, b) == [THETA_B]
    rows = [r for r in reg.history(b) if r.event == "THETA_ROLLBACK"]
    assert [(r.actor, r.details) for r in rows] == [
        ("bob", {"from": list(THETA_B), "to": [0.7, 0.3], "named": True}),
        ("bob", {"from": [0.7, 0.3], "to": list(THETA_B), "named": False}),
    ]
    acts = reg.actions(action="ops.rollback")
    assert [(r.result, (r.details or {}).get("code")) for r in acts] == [
        ("refused", "OPS_ROLLBACK_NO_TARGET"), ("refused", "OPS_ROLLBACK_NO_TARGET"),
        ("refused", "OPS_ROLLBACK_THETA_INVALID"), ("refused", "OPS_ROLLBACK_TARGET_MISMATCH"),
        ("refused", "OPS_ROLLBACK_TARGET_UNUSABLE"), ("ok", None), ("ok", None),
    ]  # fmt: skip
    assert (acts[-2].before, acts[-2].after, acts[-2].actor, acts[-2].role) == (
        {"model_version": b, "theta": list(THETA_B)},
        {"model_version": b, "theta": [0.7, 0.3]}, "bob", "admin",
    )  # fmt: skip
    assert acts[-1].action_id == again.action_id
    assert reg.verify_audit().intact
    notice = json.loads((serving_dir(cfg) / "deployed.json").read_text())
    assert (notice["event"], notice["model_version"], notice["theta1"]) == (
        "theta_rollback", b, THETA_B[0])  # fmt: skip


def test_a_new_feature_set_rewarms_the_pairs_and_keeps_their_state(
    demo_model: tuple[AppConfig, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, a, b = _archive(*demo_model, tmp_path, monkeypatch)
    # Version C: B's files with a longer z window in its decision record.
    c = _second_name(b)
    shutil.copytree(cfg.paths.models / b, cfg.paths.models / c)
    record = json.loads((cfg.paths.models / c / DECISION_RECORD).read_bytes())
    record["feature_windows"]["z_window"] += 24
    body = record_bytes(record)
    (cfg.paths.models / c / DECISION_RECORD).write_bytes(body)
    sums = json.loads((cfg.paths.models / c / "checksums.json").read_text())
    sums[DECISION_RECORD] = hashlib.sha256(body).hexdigest()
    pairs = tuple(p.pair_id for p in cfg.universe.pairs)
    bars, warm = replay_bars(cfg, list(pairs), 200)
    root = tmp_path / "serving"
    feed = tmp_path / "bars.jsonl"
    write_bars_file(feed, bars[: len(bars) // 2])
    spec = WorkerSpec("worker-0", pairs, str(cfg.config_root), cfg.env_name,
                      str(cfg.paths.models / a), THETA_A, replay=True, warm_until_ns=warm,
                      root=str(root), bars_file=str(feed), aggregate=False,
                      exit_when_idle_seconds=0.2)  # fmt: skip
    worker = Worker(spec, cfg=cfg)
    while worker.step():
        pass

    def kept_state(rt: Any) -> tuple[Any, ...]:
        return (rt.decider.state(), rt.units, rt.last_ts_ns,
                None if rt.dd is None else rt.dd.state())  # fmt: skip

    kept = {p: kept_state(rt) for p, rt in worker.pairs.items()}
    assert any(k[3] is not None and k[3]["t"] >= 0 for k in kept.values())
    engines = {p: rt.engine for p, rt in worker.pairs.items()}
    warmups = worker.tally["refused:warmup"]
    write_target(root, ServingTarget(1, c, str(cfg.paths.models / c), THETA_B,
                                     tuple(sorted(sums.items()))))  # fmt: skip
    worker.step()
    assert worker.version == c and worker.theta == THETA_B
    for p, rt in worker.pairs.items():
        assert kept_state(rt) == kept[p]
        assert rt.engine is not engines[p]
        assert rt.setup.windows.z_window == record["feature_windows"]["z_window"]
    with feed.open("a") as fh:
        for x in bars[len(bars) // 2 :]:
            fh.write(json.dumps(bar_message(x), sort_keys=True) + "\n")
    while worker.step():
        pass
    assert worker.tally["refused:warmup"] == warmups  # re-warmed: no bar lost to warm-up
    worker.run()
    signals = _read(root)
    after = [s for s in signals if s["model_version"] == c]
    assert after and {s["metadata"]["params_sha256"] for s in after} == {sums[DECISION_RECORD]}
    assert len({s["id"] for s in signals}) == len(signals)
