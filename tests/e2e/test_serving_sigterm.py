"""`mlcore serve` stopped from outside, as a real process tree: SIGTERM to the supervisor (the
signal a service manager or a container runtime sends) stops every worker, as SIGINT does, and
the supervisor exits 0 after its summary; SIGKILL of the supervisor, which leaves it no chance
to stop anyone, still takes every worker down within seconds (the kernel's parent-death
signal). Bars come from a file; the demo's model is served, warmed on the demo's catalog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcore.config import AppConfig
from mlcore.demo import DemoResult
from tests.conftest import config_with

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BIN = Path(sys.executable).parent
WORKERS = 2
START_S = 240.0  # two workers load the model and warm on the catalog on a shared 2-core host


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # state, ppid, ...


def _running(pid: int) -> bool:
    """Alive, a zombie (dead, not yet reaped by whoever adopted it) not counted."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _workers(supervisor: int) -> set[int]:
    """The supervisor's spawned worker processes (not multiprocessing's resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or int(fields[1]) != supervisor:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = {p for p in pids if _running(p)}
        if not left:
            return left
        time.sleep(0.1)
    return {p for p in pids if _running(p)}


@pytest.fixture
def serving(
    demo_run: tuple[AppConfig, DemoResult], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], set[int], Path]]:
    """`mlcore serve` of the demo's model on two workers, once both have beaten; the process,
    its workers' PIDs and its output file. Whatever is left running is killed afterwards."""
    cfg, result = demo_run
    assert result.training is not None
    name = f"serving-stop-{uuid.uuid4().hex[:8]}"
    bar_source = {"kind": "file", "stream_prefix": "core:bars:", "file": f"{name}/bars.jsonl",
                  "block_ms": 200, "batch_bars": 512}  # fmt: skip
    root = config_with(tmp_path, {"serving_policy": {
        "serving_root": name, "bar_source": bar_source, "metrics_port": 0}})  # fmt: skip
    unset = ("REDIS_URL", "POSTGRES_URL", "SERVICE_ENV", "MLCORE_CONFIG_ROOT")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env |= {"ARCHIVE_PATH": str(cfg.paths.archive), "TZ": "UTC"}
    out = tmp_path / "serve.log"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            # The demo's version is rejected by its gates: served on purpose.
            [str(BIN / "mlcore"), "serve", "--model", str(result.training.folder),
             "--force-rejected", "--workers", str(WORKERS), "--bars", "file", "--config-root",
             str(root)],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    beats = [cfg.paths.archive / name / "heartbeats" / f"worker-{i}.json" for i in range(WORKERS)]
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + START_S
        while not all(b.exists() for b in beats):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, f"workers not up: {out.read_text()}"
            time.sleep(0.2)
        workers = _workers(proc.pid)
        assert len(workers) == WORKERS, (workers, out.read_text())
        yield proc, workers, out
    finally:
        for pid in {proc.pid, *workers}:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_supervisor_stops_every_worker(
    serving: tuple[subprocess.Popen[bytes], set[int], Path], sig: signal.Signals
) -> None:
    proc, workers, out = serving
    proc.send_signal(sig)  # to the supervisor alone, not to its process group
    assert proc.wait(timeout=60) == 0, out.read_text()
    assert _wait_gone(workers, 5.0) == set()
    text = out.read_text()
    assert "stopped by a signal: every worker stopped" in text, text
    assert "signals 0 (" in text, text


def test_workers_die_with_a_killed_supervisor(
    serving: tuple[subprocess.Popen[bytes], set[int], Path],
) -> None:
    proc, workers, out = serving
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    # Each worker gets SIGTERM from the kernel, commits and exits.
    assert _wait_gone(workers, 10.0) == set(), out.read_text()
