"""The ingest lock of a (symbol, timeframe): two ingests of the same series, in one process or
in several, never interleave their read-merge-write of its partitions (one would overwrite the
other's rows)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlcore._flock import wait_for_flock
from mlcore.errors import ConfigError, RetryableError

log = logging.getLogger("mlcore.data")
LOCK_WAIT_S = 600.0


@contextmanager
def symbol_lock(
    root: Path, symbol: str, timeframe: str, wait_s: float = LOCK_WAIT_S
) -> Iterator[None]:
    """Hold the ingest lock of (symbol, timeframe) under ``root`` (an advisory ``flock`` on a
    file in ``root/.locks``, released by the kernel if the holder dies); wait for another
    holder up to ``wait_s``, then refuse (RetryableError)."""
    folder = root / ".locks"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{timeframe}_{symbol}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(
            "DATA_ARCHIVE_UNUSABLE",
            f"ingest lock {folder / name}.lock cannot be created: {exc.strerror or exc} "
            f"({exc.filename})",
            details={"path": str(folder)},
        ) from None
    try:
        wait_for_flock(
            fd, wait_s,
            lambda: RetryableError(
                "DATA_INGEST_BUSY",
                f"another ingest of {symbol} {timeframe} held its lock for over {wait_s:g} s; "
                "try again when it is done",
            ),
            lambda: log.info("waiting for another ingest of %s %s", symbol, timeframe),
        )  # fmt: skip
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
