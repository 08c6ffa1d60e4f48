"""A retraining run killed with SIGKILL, as a user's `mlcore flows run retrain` in a process
of its own: Prefect's ephemeral API server it started ends with it, and the next run takes
the dead run over at once (its process is known gone) with no traceback. The first run's
catalog update meets a full disk (injected before the command line starts), a transient
failure, so the run is killed in its 10-minute retry wait; the next run, over an archive with
no bars, fails fast: what is under test is the kill, not the training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcore.config import load_config
from mlcore.flows import RETRAIN_ORPHANED
from mlcore.registry import registry_for
from tests.conftest import REPO, config_with

SERVER_APP = "prefect.server.api.server:create_app"

# `mlcore flows run retrain` as `python -m mlcore` runs it, its catalog step failing as a full
# disk would (an OSError: retried after retrain_retry_delay_minutes).
FULL_DISK = """
import sys
from mlcore.flows import _tasks
def full_disk(_cfg):
    raise OSError(28, "No space left on device")
_tasks.build_catalog = full_disk
from mlcore.cli import main
sys.argv[0] = "mlcore"
main()
"""


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _running(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _servers(home: str) -> dict[int, int]:
    """Prefect API servers running now with PREFECT_HOME ``home``: pid → parent pid."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = _stat(int(proc.name))
        if (
            SERVER_APP.encode() in cmdline
            and f"PREFECT_HOME={home}".encode() in environ
            and fields is not None
            and fields[0] not in ("Z", "X")
        ):
            found[int(proc.name)] = int(fields[1])
    return found


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s:g} s")
        time.sleep(0.2)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    archive = tmp_path / "archive"
    monkeypatch.setenv("ARCHIVE_PATH", str(archive))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "ARCHIVE_PATH": str(archive),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "SERVICE_ENV": "dev",
    }
    return env


def test_a_killed_retrain_leaves_no_server_and_the_next_run_takes_over(
    workspace: dict[str, str], tmp_path: Path
) -> None:
    root = config_with(tmp_path, {"retrain_policy": {"retrain_retry_delay_minutes": 10}})
    reg = registry_for(load_config(root, "dev"))
    args = ["flows", "run", "retrain", "--config-root", str(root)]
    cmd = [sys.executable, "-m", "mlcore", *args]
    home = workspace["PREFECT_HOME"]
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [sys.executable, "-c", FULL_DISK, *args],
        cwd=REPO,
        env=workspace,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ours: list[int] = []
    try:
        # Killed in its retry wait (10 min before its first retry).
        def waiting() -> bool:
            return first.poll() is not None or any(r.status == "retrying" for r in reg.runs())

        _wait(waiting, 120, "the first run did not reach its retry wait")
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        servers = _servers(home)
        ours = list(servers)
        assert list(servers.values()) == [first.pid], servers
        first.send_signal(signal.SIGKILL)
        first.wait()
        _wait(lambda: not any(_running(pid) for pid in ours), 10, "the server outlived its run")
        assert _servers(home) == {}
    finally:
        log.close()
        for pid in ours:  # only if the test failed: never leave a server behind
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    [killed] = reg.runs()
    assert killed.status == "retrying" and killed.owner is not None
    assert str(killed.error_message).startswith("update_catalog: OSError"), killed

    # The next run (no retries: it fails at once) aborts the dead run and goes on.
    policy = root / "envs" / "dev" / "retrain_policy.yaml"
    policy.write_text(policy.read_text() + "retrain_retry_max: {value: 0}\n")
    second = subprocess.run(
        cmd, cwd=REPO, env=workspace, capture_output=True, text=True, timeout=300, check=False
    )
    assert "Traceback" not in second.stderr + second.stdout
    assert second.returncode == 65, second.stderr  # no bars: the data are wrong, not the code
    plain = [ln for ln in second.stderr.splitlines() if ln and not ln.startswith("{")]
    assert plain[-1].startswith(
        "error DATA_PAIR_NO_BARS: no pair of universe.yaml has 1h bars to use"
    ), second.stderr
    logged = [json.loads(ln) for ln in second.stderr.splitlines() if ln.startswith("{")]
    orphaned = [e for e in logged if e.get("code") == RETRAIN_ORPHANED]
    assert len(orphaned) == 1 and killed.run_id in orphaned[0]["message"]
    assert f"pid {first.pid} on" in orphaned[0]["message"]
    runs = {r.run_id: r for r in reg.runs()}
    assert runs[killed.run_id].status == "aborted"
    assert "is gone: it was killed or crashed" in str(runs[killed.run_id].error_message)
    assert [r.status for r in runs.values() if r.run_id != killed.run_id] == ["failed"]
    assert _servers(home) == {}
