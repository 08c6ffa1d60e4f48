"""A worker never outlives its supervisor: when the process that started it dies (even by
SIGKILL, which leaves no chance to stop anyone), the worker stops as if sent SIGTERM."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable

log = logging.getLogger("mlcore.serving")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> Callable[[], bool]:
    """Make this worker stop when the process that started it (the supervisor) goes away, however
    it went: on Linux the kernel sends SIGTERM on its death (``PR_SET_PDEATHSIG``); everywhere,
    the returned check sees the worker re-parented. A supervisor already gone exits at once."""
    parent = mp.parent_process()
    if parent is None or parent.pid is None:
        return lambda: False  # not started by a supervisor (a test, a shell)
    supervisor = parent.pid
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the request above took effect
        log.error("supervisor %d is gone: exiting", supervisor)
        sys.exit(1)

    def orphaned() -> bool:
        return os.getppid() != supervisor

    return orphaned
