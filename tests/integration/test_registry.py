"""The registry on both databases it runs on: SQLite (the embedded default) and the PostgreSQL
server of this machine (a fresh database per run). Same suite, same code path."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from mlcore.errors import FatalError, RetryableError, Severity
from mlcore.registry import (
    Alert,
    ModelStatus,
    Registry,
    RegistryError,
    RegistryUnavailable,
    RetrainRun,
    RunStatus,
    StatusChange,
    open_registry,
)
from mlcore.registry._tables import retrain_runs
from tests.conftest import free_port, make_version, postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry' / 'registry.db'}"
    else:
        yield from postgres_url()


def test_register_read_and_refuse(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    open_registry(url)  # migrating again is a no-op
    folder = make_version(tmp_path / "models", "20250101_0000_abc1234")
    rec = reg.register(folder, actor="test", notes="first training run")
    assert (rec.status, rec.timeframe, rec.seed, rec.code_hash) == ("draft", "1h", 7, "abc123")
    assert rec.checksums["ai1.lgbm.txt"] == hashlib.sha256(b"tree\n").hexdigest()
    assert rec.artifact_path == str(folder)
    assert [r.model_version for r in reg.records()] == [folder.name]
    with pytest.raises(RegistryError, match="already registered"):
        reg.register(folder, actor="test", notes="again")
    with pytest.raises(RegistryError, match="needs notes"):
        reg.register(make_version(tmp_path / "m2", "20250102_0000_abc"), actor="t", notes=" ")
    with pytest.raises(RegistryError, match="is not registered"):
        reg.get("nope")
    with pytest.raises(RegistryError, match=r"run\.json: missing; is .* a model version"):
        reg.register(tmp_path, actor="t", notes="not a version")
    names = inspect(reg.engine).get_table_names(schema=None if url.startswith("sqlite") else "core")
    assert {"model_registry", "signals_live", "signals_history"} <= set(names)


def test_state_machine_promote_and_rollback(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    old = make_version(tmp_path, "20250101_0000_aaaaaaa").name
    new = make_version(tmp_path, "20250201_0000_bbbbbbb").name
    for v in (old, new):
        reg.register(tmp_path / v, actor="ci", notes="trained")
    with pytest.raises(
        RegistryError, match="is draft: it can go to candidate, rejected, not deployed"
    ):
        reg.transition(old, "deployed", actor="ci", notes="skip the checks")
    with pytest.raises(RegistryError, match="needs notes"):
        reg.transition(old, "candidate", actor="ci", notes="")
    for v in (old, new):
        reg.transition(v, "candidate", actor="ci", notes="backtest passed")
        reg.transition(v, "approved", actor="ops", notes="gates passed", theta=(0.72, 0.28))
    assert reg.get(old).theta1 == pytest.approx(0.72)
    reg.transition(old, "deployed", actor="ops", notes="first deployment")
    reg.transition(new, "deployed", actor="ops", notes="better Sharpe")
    assert reg.get(old).status == "approved" and reg.get(new).status == "deployed"
    assert [r.model_version for r in reg.records("deployed")] == [new]
    done = reg.rollback(actor="ops", notes="live slippage above the backtest's")
    back = done.deployed
    assert done.rolled_back == new
    assert back.model_version == old and back.status == "deployed"
    assert reg.get(new).status == "rolled_back"
    events = [(h["event"], h["model_version"], h["old_status"], h["new_status"])
              for h in reg.history()]  # fmt: skip
    assert events[-2:] == [
        ("CONFIG_ROLLBACK", new, "deployed", "rolled_back"),
        ("CONFIG_ROLLBACK", old, "approved", "deployed"),
    ]
    assert ("MODEL_STATUS", old, "deployed", "approved") in events
    assert all(h["notes"] for h in reg.history())
    reg.transition(new, "rejected", actor="ops", notes="retired")
    with pytest.raises(RegistryError, match="can go to nothing"):
        reg.transition(new, "candidate", actor="ops", notes="revive")
    with pytest.raises(RegistryError, match="no earlier deployed version"):
        reg.rollback(actor="ops", notes="again")


def _register_many(url: str, root: str, names: list[str]) -> None:
    reg = Registry(open_registry(url).engine)
    for name in names:
        reg.register(Path(root) / name, actor=f"pid{os.getpid()}", notes="concurrent")


def _deploy(url: str, name: str, barrier: mp.synchronize.Barrier) -> None:
    reg = open_registry(url)
    barrier.wait()
    reg.transition(name, "deployed", actor=f"pid{os.getpid()}", notes="race")


def test_two_processes_at_once_lose_nothing(url: str, tmp_path: Path) -> None:
    open_registry(url)
    names = [f"20250301_{i:04d}_ccccccc" for i in range(20)]
    for n in names:
        make_version(tmp_path, n)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(url, str(tmp_path), names[k::2]))
             for k in (0, 1)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    reg = open_registry(url)
    assert sorted(r.model_version for r in reg.records()) == names
    assert len([h for h in reg.history() if h["event"] == "MODEL_REGISTERED"]) == 20
    # Two deployments racing: each is carried out whole, one after the other; one is in service.
    for n in names[:2]:
        reg.transition(n, "candidate", actor="ci", notes="ok")
        reg.transition(n, "approved", actor="ci", notes="ok")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_deploy, args=(url, n, barrier)) for n in names[:2]]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    statuses = sorted(reg.get(n).status for n in names[:2])
    assert statuses == ["approved", "deployed"]


def test_disaster_recovery_and_retention(url: str, tmp_path: Path) -> None:
    reg = open_registry(url, tmp_path / "store")
    names = [f"20250{m}01_0000_ddddddd" for m in range(1, 8)]
    for n in names:
        reg.register(make_version(tmp_path / "models", n), actor="ci", notes="trained")
    first = names[0]
    rec = reg.get(first)
    assert rec.artifact_path == str(tmp_path / "store" / first)
    served = tmp_path / "models" / first
    assert reg.verify(first) == {}
    (served / "ai1.lgbm.txt").unlink()
    (served / "ai2.lgbm.txt").write_bytes(b"corrupted")
    assert reg.verify(first) == {"ai1.lgbm.txt": "missing", "ai2.lgbm.txt": "checksum mismatch"}
    restored = reg.restore(first, actor="ops")
    assert restored == {"ai1.lgbm.txt": "missing", "ai2.lgbm.txt": "checksum mismatch"}
    assert reg.verify(first) == {} and (served / "ai2.lgbm.txt").read_bytes() == b"tree\n"
    assert [h["event"] for h in reg.history(first)][-1] == "MODEL_RESTORED"
    # A damaged archived copy is never served.
    (tmp_path / "store" / first / "ai3.lgbm.txt").write_bytes(b"bad copy")
    (served / "ai3.lgbm.txt").unlink()
    with pytest.raises(RegistryError, match="archived copy fails its checksum too"):
        reg.restore(first, actor="ops")
    assert not (served / "ai3.lgbm.txt").exists()
    # Retention: the newest 5 stay, and so does the deployed (oldest) one.
    for step in ("candidate", "approved", "deployed"):
        reg.transition(names[1], step, actor="ci", notes="ok")
    with pytest.raises(RegistryError, match="at least 5"):
        reg.prune(3, actor="ops")
    assert reg.prune(5, actor="ops", dry_run=True) == [first]
    assert reg.prune(5, actor="ops") == [first]
    assert not served.exists() and not (tmp_path / "store" / first).exists()
    assert (tmp_path / "models" / names[1]).exists()
    assert [h["event"] for h in reg.history(first)][-1] == "MODEL_PRUNED"


def test_retrain_runs_and_the_two_failure_stop(url: str) -> None:
    reg = open_registry(url)
    ok = reg.start_run(log_path="/logs/1.log")
    reg.finish_run(ok, "success", model_version="20250101_0000_abc", theta=(0.7, 0.3),
                   metrics={"sharpe": 1.4})  # fmt: skip
    assert reg.consecutive_failures() == 0
    first = reg.start_run()
    reg.finish_run(first, "retrying", retry_count=1, error_message="catalog locked")
    assert reg.runs()[0]["ended_at"] is None
    reg.finish_run(first, "failed", retry_count=2, error_message="catalog locked")
    assert reg.consecutive_failures() == 1
    second = reg.start_run()
    reg.finish_run(second, "failed", retry_count=2, error_message="no bars")
    assert reg.consecutive_failures() == 2
    rows = {r["run_id"]: r for r in reg.runs()}
    assert rows[first]["retry_count"] == 2 and rows[first]["error_message"] == "catalog locked"
    assert float(rows[ok]["theta1"]) == pytest.approx(0.7)
    with pytest.raises(RegistryError, match="needs its error message"):
        reg.finish_run(reg.start_run(), "failed")
    with pytest.raises(RegistryError, match="not 'done'"):
        reg.finish_run(second, "done")
    with pytest.raises(RegistryError, match="is not recorded"):
        reg.finish_run("no-such-run", "success")
    again = reg.start_run()
    reg.finish_run(again, "success")
    assert reg.consecutive_failures() == 0


def _code(fn: Callable[[], object]) -> str:
    with pytest.raises(RegistryError) as info:
        fn()
    assert isinstance(info.value, FatalError) and isinstance(info.value, ValueError)
    return info.value.code


def test_every_refusal_has_its_code(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    v = reg.register(make_version(tmp_path, "20250101_0000_eeeeeee"), actor="t", notes="n")
    name = v.model_version
    assert _code(lambda: reg.get("nope")) == "REGISTRY_VERSION_NOT_FOUND"
    assert _code(lambda: reg.served_folder("nope")) == "REGISTRY_VERSION_NOT_FOUND"
    assert _code(lambda: reg.transition("nope", "candidate", actor="t", notes="n")) == (
        "REGISTRY_VERSION_NOT_FOUND"
    )
    assert _code(lambda: reg.register(tmp_path / name, actor="t", notes="n")) == (
        "REGISTRY_VERSION_EXISTS"
    )
    assert _code(lambda: reg.register(tmp_path / "gone", actor="t", notes="n")) == (
        "REGISTRY_VERSION_UNREADABLE"
    )
    assert _code(lambda: reg.register(tmp_path, actor="t", notes="n", status="deployed")) == (
        "REGISTRY_STATE_INVALID_TRANSITION"
    )
    assert _code(lambda: reg.transition(name, "deployed", actor="t", notes="n")) == (
        "REGISTRY_STATE_INVALID_TRANSITION"
    )
    assert _code(lambda: reg.transition(name, "live", actor="t", notes="n")) == (
        "REGISTRY_STATE_UNKNOWN_STATUS"
    )
    assert _code(lambda: reg.records("live")) == "REGISTRY_STATE_UNKNOWN_STATUS"
    assert _code(lambda: reg.transition(name, "candidate", actor="t", notes="")) == (
        "REGISTRY_REQUEST_NOTES_MISSING"
    )
    assert _code(lambda: reg.rollback(actor="t", notes="n")) == (
        "REGISTRY_STATE_NO_ROLLBACK_TARGET"
    )
    assert _code(lambda: reg.restore(name, actor="t")) == "REGISTRY_ARTIFACT_NO_STORE"
    assert _code(lambda: reg.prune(2, actor="t")) == "REGISTRY_RETENTION_KEEP_TOO_LOW"
    assert _code(lambda: reg.finish_run("no-such-run", "success")) == "REGISTRY_RUN_NOT_FOUND"
    assert _code(lambda: reg.run("no-such-run")) == "REGISTRY_RUN_NOT_FOUND"
    run = reg.start_run()
    assert _code(lambda: reg.finish_run(run, "running")) == "REGISTRY_RUN_INVALID_STATUS"
    assert _code(lambda: reg.finish_run(run, "failed")) == "REGISTRY_RUN_INVALID_STATUS"
    stored = open_registry(url, tmp_path / "store")
    stored.versions.store = stored.artifacts.store = stored.store  # same store for both parts
    assert _code(lambda: stored.restore(name, actor="t")) == "REGISTRY_ARTIFACT_MISSING"
    bad = make_version(tmp_path / "bad", "20250102_0000_fffffff")
    (bad / "ai1.lgbm.txt").write_bytes(b"not the tree")
    assert _code(lambda: stored.register(bad, actor="t", notes="n")) == "REGISTRY_ARTIFACT_DAMAGED"


def test_an_unreachable_database_is_retryable(tmp_path: Path) -> None:
    with pytest.raises(RegistryUnavailable) as info:
        open_registry(f"postgresql+psycopg://mlcore@127.0.0.1:{free_port()}/none")
    assert info.value.code == "REGISTRY_DB_UNAVAILABLE"
    assert isinstance(info.value, RetryableError) and not isinstance(info.value, FatalError)
    assert "127.0.0.1" in info.value.message and "retry" in info.value.message
    # Once open, other errors keep their own types (a refused request is no outage).
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    with pytest.raises(RegistryError):
        reg.get("nope")


def test_typed_rows_keep_the_stored_strings(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    rec = reg.register(make_version(tmp_path, "20250101_0000_ggggggg"), actor="t", notes="n")
    assert rec.status is ModelStatus.DRAFT and rec.status == "draft"
    assert rec.created_at.tzinfo is not None
    [change] = reg.history()
    assert isinstance(change, StatusChange) and change.new_status is ModelStatus.DRAFT
    assert change["event"] == change.event == "MODEL_REGISTERED"
    run_id = reg.start_run(log_path="/logs/a.log")
    reg.raise_alert("CORE_RETRAIN_FAILED", "boom", channel="slack", run_id=run_id)
    [run] = reg.runs()
    assert isinstance(run, RetrainRun) and run.status is RunStatus.RUNNING
    assert run["status"] == "running" and run.as_dict()["log_path"] == "/logs/a.log"
    with pytest.raises(KeyError):
        run["no_such_column"]
    [alert] = reg.alerts()
    assert isinstance(alert, Alert) and alert.severity is Severity.ERROR
    assert alert["severity"] == "error" and alert.run_id == run_id
    with reg.engine.connect() as conn:
        stored = conn.execute(select(retrain_runs.c.status)).scalar_one()
    assert type(stored) is str and stored == "running"


def test_failure_count_and_stalled_runs_over_many_runs(url: str) -> None:
    """The bounded queries answer as a walk over every run would, at each step."""
    reg = open_registry(url)
    kinds = ["success", "failed", "failed", "aborted", "retrying", "failed"]
    outcomes = [kinds[(i * 7 + i // 5) % len(kinds)] for i in range(120)]
    walked = 0
    for i, status in enumerate(outcomes):
        run_id = reg.start_run()
        message = None if status in ("success", "retrying") else f"run {i}"
        reg.finish_run(run_id, status, error_message=message)
        walked = 0 if status == "success" else walked + (status == "failed")
        if i % 17 == 0:
            assert reg.consecutive_failures() == walked
        if i == 60:
            reg.resume_retraining(actor="ops", notes="fixed")
            walked = 0
    assert reg.consecutive_failures() == walked
    assert len(reg.runs()) == 120 and len(reg.runs(limit=7)) == 7
    assert [r.run_id for r in reg.runs(limit=3)] == [r.run_id for r in reg.runs()[:3]]
    # Stalled: running or retrying with an old heartbeat; finished runs never are.
    retrying = {r.run_id for r in reg.runs() if r.status is RunStatus.RETRYING}
    assert {r.run_id for r in reg.active_runs()} == retrying
    assert reg.stalled_runs(3600.0) == []
    time.sleep(0.3)
    fresh = reg.start_run()
    stalled = {r.run_id for r in reg.stalled_runs(0.2)}
    assert stalled == retrying and fresh not in stalled
    reg.heartbeat(next(iter(retrying)))
    assert len(reg.stalled_runs(0.2)) == len(retrying) - 1
    assert fresh in {r.run_id for r in reg.stalled_runs(0.0)}


def test_registering_a_version_twice_says_what_to_do(tmp_path: Path) -> None:
    """`mlcore train` registers what it writes, so the walk-through's `registry register` that
    follows it said only "already registered" (exit 1), no next step."""
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    name = reg.register(make_version(tmp_path, "20250101_0000_fffffff"), actor="t",
                        notes="n").model_version  # fmt: skip
    with pytest.raises(RegistryError) as info:
        reg.register(tmp_path / name, actor="t", notes="n")
    assert info.value.code == "REGISTRY_VERSION_EXISTS"
    assert f"`mlcore registry show {name}`" in info.value.message
    assert "`mlcore train` registers what it writes" in info.value.message
