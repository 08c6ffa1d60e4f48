"""Who runs a retraining run, and whether that process is gone: told from /proc for real
processes (this one, a child that exited, a zombie), never guessed for another machine."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mlcore.flows._owner import Owner, is_gone, parse_owner, this_process

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="process identity is read from /proc"
)


def _child(wait: bool) -> tuple[Owner, subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    here = this_process()
    stat = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
    owner = replace(here, pid=proc.pid, start_ticks=int(stat[19]))
    if wait:
        proc.kill()
        proc.wait()
    return owner, proc


def test_this_process_is_alive_and_round_trips() -> None:
    me = this_process()
    assert me.pid > 0 and me.start_ticks > 0 and me.boot_id and me.pid_ns.startswith("pid:")
    assert parse_owner(me.text()) == me
    assert not is_gone(me)
    assert me.describe() == f"pid {me.pid} on {me.host}"


def test_a_process_that_ended_is_gone_and_a_running_one_is_not() -> None:
    running, proc = _child(wait=False)
    try:
        assert not is_gone(running)
        proc.kill()
        proc.wait(10)
        assert is_gone(running)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    owner, proc = _child(wait=False)
    proc.kill()
    # Not waited for: a zombie until reaped, which runs nothing.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert is_gone(owner)
    proc.wait()


def test_a_reused_pid_is_not_the_owner() -> None:
    me = this_process()
    assert is_gone(replace(me, start_ticks=me.start_ticks + 1))


@pytest.mark.parametrize(
    "elsewhere",
    [{"host": "other-host"}, {"boot_id": "another-boot"}, {"pid_ns": "pid:[1]"}, {"boot_id": ""}],
)
def test_a_process_elsewhere_cannot_be_told_dead(elsewhere: dict[str, str]) -> None:
    ended, _ = _child(wait=True)
    assert is_gone(ended)
    assert not is_gone(replace(ended, **elsewhere))  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [None, "", "host boot ns 12", "h b n x 1", "h b n 1 2 3"])
def test_an_unrecorded_or_damaged_owner_is_none(text: str | None) -> None:
    assert parse_owner(text) is None
