"""The cron deployment, served for real: a `prefect server` on loopback, `mlcore flows serve`
with a one-minute test schedule, and the scheduled run it fires recorded in audit.retrain_runs.
The archive holds no bars, so the fired run fails at its first task: what is under test is the
schedule, the serving and the record, not the training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlcore.registry import open_registry
from tests.conftest import REPO, config_with, free_port

BIN = Path(sys.executable).parent


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prefect_api(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Prefect server on 127.0.0.1 with its own home, scheduling every 5 s."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"prefect server did not start: {(tmp_path / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield api, env | {"PREFECT_API_URL": api}
    finally:
        _stop(server)
        log.close()


def test_the_cron_deployment_is_served_and_fires(
    prefect_api: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    api, env = prefect_api
    archive = tmp_path / "archive"
    root = config_with(tmp_path, {"retrain_policy": {"retrain_retry_delay_minutes": 0.001}})
    env = env | {"ARCHIVE_PATH": str(archive), "PREFECT_RUNNER_POLL_FREQUENCY": "2",
                 "SERVICE_ENV": "dev"}  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    serving = subprocess.Popen(
        [str(BIN / "mlcore"), "flows", "serve", "--cron", "* * * * *", "--config-root",
         str(root)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    db = archive / "registry" / "registry.db"
    try:
        deadline = time.monotonic() + 240  # the next minute, scheduling, polling, the run
        runs: list[dict[str, object]] = []
        while time.monotonic() < deadline and serving.poll() is None:
            if db.exists():
                runs = [r for r in open_registry(f"sqlite:///{db}").runs()
                        if r["status"] not in ("running", "retrying")]  # fmt: skip
                if runs:
                    break
            time.sleep(2)
        assert runs, (
            f"no scheduled run recorded; serve log:\n{(tmp_path / 'serve.log').read_text()}"
        )
        run = runs[-1]
        # No bars is an input error: the run fails at once, not after retries.
        assert run["status"] == "failed" and run["retry_count"] == 0
        assert "no pair of universe.yaml has 1h bars to use" in str(run["error_message"])
        flow_run = httpx.get(f"{api}/flow_runs/{run['flow_run_id']}", timeout=10).json()
        assert flow_run["auto_scheduled"] is True  # the scheduler made it, not a person
        deployment = httpx.get(f"{api}/deployments/{flow_run['deployment_id']}", timeout=10).json()
        assert deployment["name"] == "core-retrain"
        [schedule] = deployment["schedules"]
        assert schedule["schedule"]["cron"] == "* * * * *"
        assert schedule["schedule"]["timezone"] == "UTC"
        assert deployment["parameters"] == {"config_root": str(root), "config_env": "dev"}
    finally:
        _stop(serving)
        log.close()


def test_serving_without_a_server_is_one_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["ARCHIVE_PATH"] = str(tmp_path / "archive")
    done = subprocess.run(
        [str(BIN / "mlcore"), "flows", "serve"], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PREFECT_API_URL is not set" in done.stderr
    assert "Traceback" not in done.stderr
    bad = subprocess.run(
        [str(BIN / "mlcore"), "flows", "serve", "--cron", "61 * * * *"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "--cron '61 * * * *'" in bad.stderr, bad.stderr
