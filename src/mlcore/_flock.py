"""Waiting for an advisory ``flock`` with a deadline (the kernel releases it if the holder
dies), shared by the ingest lock and the workspace's universe edit lock."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable


def wait_for_flock(
    fd: int, wait_s: float, busy: Callable[[], Exception],
    on_first_wait: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """Take an exclusive ``flock`` on ``fd``, polling every 50 ms; after ``wait_s`` seconds
    raise ``busy()``. ``on_first_wait`` runs once, when the lock is first found taken."""
    deadline = time.monotonic() + wait_s
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise busy() from None
            if not waited and on_first_wait is not None:
                on_first_wait()
            waited = True
            time.sleep(0.05)
