"""Which process runs a retraining run, and whether that process is gone.

A run records its owner as ``host boot-id pid-namespace pid start-ticks``. On the same host,
boot and PID namespace, the owner is gone when no live process has its pid (a zombie is not
live), or the one that has it started at another time (the pid was reused). Anywhere else
(another machine, even of the same name, another container, a boot since, no ``/proc``)
nothing can be told: the heartbeat decides.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class Owner:
    """A process, as recorded with the run it runs."""

    host: str
    boot_id: str
    pid_ns: str
    pid: int
    start_ticks: int

    def text(self) -> str:
        """The form stored in ``audit.retrain_runs.owner``."""
        return f"{self.host} {self.boot_id} {self.pid_ns} {self.pid} {self.start_ticks}"

    def describe(self) -> str:
        """For a person: ``pid N on HOST``."""
        return f"pid {self.pid} on {self.host}"


def parse_owner(text: str | None) -> Owner | None:
    """The owner recorded as ``text``; None when absent or not in the recorded form."""
    parts = (text or "").split(" ")
    if len(parts) != 5 or not (parts[3].isdigit() and parts[4].isdigit()):
        return None
    host, boot_id, pid_ns, pid, ticks = parts
    return Owner(host, boot_id, pid_ns, int(pid), int(ticks))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When live process ``pid`` started (clock ticks after boot), or None if there is none."""
    stat = _read(_PROC / str(pid) / "stat")
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] in ("Z", "X") or not fields[19].isdigit():
        return None
    return int(fields[19])


def _pid_ns() -> str:
    try:
        return os.readlink(_PROC / "self" / "ns" / "pid")
    except OSError:
        return ""


def this_process() -> Owner:
    """This process."""
    pid = os.getpid()
    return Owner(
        socket.gethostname().replace(" ", "_"),
        _read(_PROC / "sys" / "kernel" / "random" / "boot_id"),
        _pid_ns(),
        pid,
        _start_ticks(pid) or 0,
    )


def is_gone(owner: Owner, here: Owner | None = None) -> bool:
    """Whether ``owner`` is known to have ended (False when that cannot be told from here)."""
    here = here or this_process()
    same = (owner.host, owner.boot_id, owner.pid_ns) == (here.host, here.boot_id, here.pid_ns)
    if not (same and owner.boot_id and owner.pid_ns and owner.start_ticks):
        return False
    return _start_ticks(owner.pid) != owner.start_ticks
