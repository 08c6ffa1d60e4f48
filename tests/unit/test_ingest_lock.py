"""Two ingests of the same symbol at once, in two processes, lose no row: the ingest lock makes
the second wait for the first (issue 16: without it, one overwrote the other's rows)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.config import load_config
from mlcore.data import Catalog, FetchResult, build_catalog, ingest
from mlcore.data._lock import symbol_lock
from mlcore.errors import RetryableError
from tests.conftest import CONFIG_ROOT

pytestmark = pytest.mark.slow  # spawned processes, each importing the pipeline

SYM = "BTC/USD"


def _bars(hours: np.ndarray) -> pd.DataFrame:
    close = 30000.0 + hours.astype(float)
    return pd.DataFrame({
        "ts": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(hours, unit="h"),
        "open": close, "high": close + 5, "low": close - 5, "close": close, "volume": 1.0,
    })  # fmt: skip


def _ingest_part(archive: str, part: int, start: float) -> None:
    os.environ["ARCHIVE_PATH"] = archive
    cfg = load_config(CONFIG_ROOT, "dev")
    hours = np.arange(part, 24 * 30, 2)  # even or odd hours of March
    while time.time() < start:  # both start together
        time.sleep(0.001)
    for chunk in np.array_split(hours, 4):
        ingest(cfg, FetchResult(bars=_bars(chunk), source="t", rows_read=len(chunk)), SYM, "1h")


def test_two_processes_ingesting_one_symbol_lose_no_row(archive: Path) -> None:
    ctx = mp.get_context("spawn")
    start = time.time() + 3.0
    procs = [ctx.Process(target=_ingest_part, args=(str(archive), p, start)) for p in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cfg = load_config(CONFIG_ROOT, "dev")
    build_catalog(cfg)
    got = Catalog(cfg).load_bars("1h", SYM)
    assert len(got) == 24 * 30  # every hour of March, from one process or the other


def test_the_lock_waits_then_refuses(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    with symbol_lock(tmp_path, SYM, "1h"), ctx.Pool(1) as pool:
        t0 = time.monotonic()
        with pytest.raises(RetryableError, match=r"held its lock for over 0\.3 s"):
            pool.apply(_hold, (str(tmp_path),))
        assert time.monotonic() - t0 >= 0.3
    with symbol_lock(tmp_path, SYM, "1h", wait_s=0.1):  # free again
        pass


def _hold(root: str) -> None:
    with symbol_lock(Path(root), SYM, "1h", wait_s=0.3):
        pass
