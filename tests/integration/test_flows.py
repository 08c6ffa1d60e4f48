"""The retraining flow's bookkeeping on both databases: retries with exponential backoff for a
transient failure only, every run and failure in audit.retrain_runs, the stop after two
consecutive failures and its alerts, resuming, heartbeats and stalled runs. The failing input is
real: the archive holds no bars, so the catalog task fails every time, at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig, load_config
from mlcore.flows import (
    RETRAIN_FAILED,
    RETRAIN_HEARTBEAT,
    RETRAIN_ORPHANED,
    RETRAIN_SKIPPED,
    RETRAIN_STOPPED,
    RetrainRefused,
    RunGuard,
    run_retrain,
)
from mlcore.flows._owner import this_process
from mlcore.registry import registry_for
from tests.conftest import config_with, postgres_url

pytestmark = pytest.mark.usefixtures("prefect_harness")

DELAY_MIN = 0.0005  # 30 ms, then 60 ms
NO_BARS = "no pair of universe.yaml has 1h bars to use"


@pytest.fixture(params=["sqlite", "postgresql"])
def cfg(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AppConfig]:
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    root = config_with(tmp_path, {"retrain_policy": {
        "retrain_retry_delay_minutes": DELAY_MIN, "heartbeat_seconds": 0.2,
    }})  # fmt: skip
    if request.param == "sqlite":
        yield load_config(root, "dev")
        return
    for url in postgres_url():
        monkeypatch.setenv("POSTGRES_URL", url)
        yield load_config(root, "dev")


def _task_runs(flow_run_id: str) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
    return {r.name.split("-")[0]: r for r in runs}


def test_a_transient_failure_is_retried_with_backoff_and_recorded(
    cfg: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlcore.flows import _tasks

    def full_disk(_cfg: AppConfig) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_tasks, "build_catalog", full_disk)
    reg = registry_for(cfg)
    with pytest.raises(OSError, match="No space left"):
        run_retrain(cfg)
    [first] = reg.runs()
    assert first["status"] == "failed" and first["retry_count"] == 2
    assert first["error_message"].startswith("update_catalog: OSError")
    # Prefect ran the task three times, waiting 30 ms then 60 ms (exponential backoff).
    task = _task_runs(first["flow_run_id"])["update_catalog"]
    assert task.run_count == 3 and task.state.is_failed()
    assert task.empirical_policy.retries == 2
    assert task.empirical_policy.retry_delay == pytest.approx([DELAY_MIN * 60, DELAY_MIN * 120])


def test_an_input_error_fails_at_once_and_two_failures_stop_retraining(
    cfg: AppConfig,
) -> None:  # fmt: skip
    """Before: a run over an archive without bars retried for an hour (retrain_retry_delay),
    then recorded only Prefect's TerminationSignal; waiting cannot bring bars."""
    reg = registry_for(cfg)
    with pytest.raises(ValueError, match=NO_BARS):
        run_retrain(cfg)
    [first] = reg.runs()
    assert first["status"] == "failed"
    assert first["retry_count"] == 0
    assert first["error_message"].startswith(f"update_catalog: DATA_PAIR_NO_BARS: {NO_BARS}")
    assert (
        "pair XAU_XAG skipped: no included 1h bars of XAU/USD and XAG/USD"
        in (first["error_message"])
    )
    assert first["ended_at"] is not None and first["flow_run_id"]
    task = _task_runs(first["flow_run_id"])["update_catalog"]
    assert task.run_count == 1 and task.state.is_failed()
    assert [a["code"] for a in reg.alerts()] == [RETRAIN_FAILED]
    assert reg.consecutive_failures() == 1

    with pytest.raises(ValueError, match=NO_BARS):
        run_retrain(cfg)
    assert reg.consecutive_failures() == 2
    stopped = reg.alerts(RETRAIN_STOPPED)
    assert len(stopped) == 1 and stopped[0]["severity"] == "critical"
    assert "stopped after 2 consecutive failed runs" in stopped[0]["message"]
    assert stopped[0]["channel"] == cfg.retrain.notification_channel

    # Stopped: the next run is refused before its flow starts, and recorded as aborted.
    with pytest.raises(RetrainRefused, match="stopped after 2 consecutive failed runs"):
        run_retrain(cfg)
    refused = reg.runs()[0]
    assert refused["status"] == "aborted" and refused["retry_count"] == 0
    assert refused["flow_run_id"] is None  # no Prefect flow run, no task
    assert len(reg.alerts(RETRAIN_SKIPPED)) == 1

    with pytest.raises(ValueError, match="needs notes"):
        reg.resume_retraining(actor="ops", notes=" ")
    reg.resume_retraining(actor="ops", notes="bars re-ingested")
    assert reg.consecutive_failures() == 0
    with pytest.raises(ValueError, match=NO_BARS):
        run_retrain(cfg)  # runs again (and fails again: still no bars)
    assert reg.runs()[0]["status"] == "failed"
    assert reg.consecutive_failures() == 1
    assert [h["event"] for h in reg.history() if h["event"] == "RETRAIN_RESUMED"] == [
        "RETRAIN_RESUMED"
    ]


def test_a_run_whose_heartbeat_stopped_is_aborted_and_alerted(cfg: AppConfig) -> None:
    reg = registry_for(cfg)
    dead = reg.start_run()  # a run whose process died: it never beats again
    stale_s = cfg.retrain.heartbeat_seconds * cfg.retrain.heartbeat_stale_factor
    time.sleep(stale_s + 0.3)
    with pytest.raises(ValueError, match=NO_BARS):
        run_retrain(cfg)
    runs = {r["run_id"]: r for r in reg.runs()}
    assert runs[dead]["status"] == "aborted"
    assert "no heartbeat for over 1 s" in runs[dead]["error_message"]
    [alert] = reg.alerts(RETRAIN_HEARTBEAT)
    assert alert["run_id"] == dead


def test_a_run_in_progress_blocks_a_second_one(cfg: AppConfig) -> None:
    reg = registry_for(cfg)
    busy = reg.start_run(owner=this_process().text())  # alive: this very process
    with (
        RunGuard(reg, cfg.retrain, busy).heartbeat(),
        pytest.raises(RetrainRefused, match=f"{busy} .*by pid {os.getpid()} on .* is still in "
                      "progress; wait for it to end, or, if its process is gone, for its "
                      "heartbeat to be 1 s old"),
    ):  # fmt: skip
        run_retrain(cfg)
    assert reg.runs()[0]["status"] == "aborted"
    assert {r["run_id"]: r["status"] for r in reg.runs()}[busy] == "running"


def test_a_run_whose_process_is_gone_is_aborted_at_once(cfg: AppConfig) -> None:
    reg = registry_for(cfg)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = int(Path(f"/proc/{ended.pid}/stat").read_text().rpartition(")")[2].split()[19])
    ended.wait()
    dead = reg.start_run(owner=replace(this_process(), pid=ended.pid, start_ticks=ticks).text())
    with pytest.raises(ValueError, match=NO_BARS):
        run_retrain(cfg)  # no heartbeat has gone stale: the dead process alone tells
    runs = {r["run_id"]: r for r in reg.runs()}
    assert runs[dead]["status"] == "aborted"
    assert runs[dead]["error_message"] == (
        f"its process (pid {ended.pid} on {this_process().host}) is gone: it was killed or crashed"
    )
    [alert] = reg.alerts(RETRAIN_ORPHANED)
    assert alert["run_id"] == dead
    assert reg.alerts(RETRAIN_HEARTBEAT) == []


def test_a_refused_run_is_one_line_on_the_command_line(cfg: AppConfig) -> None:
    reg = registry_for(cfg)
    busy = reg.start_run(owner=this_process().text())
    with RunGuard(reg, cfg.retrain, busy).heartbeat():
        result = CliRunner().invoke(
            app, ["flows", "run", "retrain", "--config-root", str(cfg.config_root)]
        )
    assert result.exit_code == 1
    plain = [ln for ln in result.output.splitlines() if ln and not ln.startswith("{")]
    assert len(plain) == 1 and plain[0].startswith("error RETRAIN_GUARD_BUSY: retraining run ")
    assert "Traceback" not in result.output


def test_long_steps_record_heartbeats(cfg: AppConfig) -> None:
    reg = registry_for(cfg)
    guard = RunGuard(reg, cfg.retrain, reg.start_run())
    first = reg.runs()[0]["heartbeat_at"]
    with guard.heartbeat():
        time.sleep(0.7)
    assert reg.runs()[0]["heartbeat_at"] > first
    assert reg.stalled_runs(10.0) == []
