"""Run a module as ``__main__`` in a process that ends when the process that started it dies,
even by SIGKILL (no handler of the parent runs then, so only the child can notice).

``python -m mlcore._parent_bound PARENT_PID MODULE [ARGS...]``: a thread watches the parent;
once the child is re-parented (its parent died), the child is asked to stop (SIGTERM) and, if it
has not stopped ``STOP_GRACE_S`` later, it exits. Polling the parent's id works whichever
thread of the parent started the child, unlike ``PR_SET_PDEATHSIG`` (which fires when that
thread ends, not the process). Kept light: this module imports nothing of mlcore.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading

POLL_S = 0.2
STOP_GRACE_S = 5.0


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(STOP_GRACE_S)
    os._exit(1)


def main(argv: list[str]) -> None:
    """Watch the parent whose id is ``argv[0]``, then run module ``argv[1]`` with the rest."""
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m mlcore._parent_bound PARENT_PID MODULE [ARGS...]")
    parent_pid, module = int(argv[0]), argv[1]
    threading.Thread(target=_watch, args=(parent_pid,), name="parent-watch", daemon=True).start()
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
