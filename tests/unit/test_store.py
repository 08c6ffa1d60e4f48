"""Partition writes are atomic, recoverable after a crash at any step, and idempotent."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from mlcore.data._atomic import recover, replace_dir
from mlcore.data._store import PartitionStore, bars_hash, json_bytes
from mlcore.errors import FatalError


class Crash(Exception):
    pass


def _crash_at(step: str):  # type: ignore[no-untyped-def]
    def hook(s: str) -> None:
        if s == step:
            raise Crash(step)

    return hook


OLD = {"bars.parquet": b"old-bars", "__meta.json": b"old-meta"}
NEW = {"bars.parquet": b"new-bars" * 100, "__meta.json": b"new-meta", "__quarantine.json": b"q"}


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "__complete"}


@pytest.mark.parametrize(
    "step", ["wrote:bars.parquet", "wrote:__meta.json", "complete", "moved-old", "swapped"]
)
def test_crash_at_any_step_leaves_old_or_new_whole(tmp_path: Path, step: str) -> None:
    final = tmp_path / "XAU_USD" / "2024-05"
    replace_dir(final, OLD)
    with pytest.raises(Crash):
        replace_dir(final, NEW, fault=_crash_at(step))
    recover(final.parent)
    got = _contents(final)
    assert got in (OLD, NEW)
    # Before the new folder was complete the old one must survive; after, the new one wins.
    expect_new = step in ("moved-old", "swapped")
    assert got == (NEW if expect_new else OLD)
    assert [p.name for p in final.parent.iterdir()] == ["2024-05"]


def test_crash_on_first_write_leaves_nothing_visible(tmp_path: Path) -> None:
    final = tmp_path / "sym" / "2024-05"
    with pytest.raises(Crash):
        replace_dir(final, NEW, fault=_crash_at("wrote:bars.parquet"))
    recover(final.parent)
    assert not final.exists()
    assert list(final.parent.iterdir()) == []


def test_interrupted_swap_is_completed_by_store_reads(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path)
    store.write("1h", "XAU/USD", "2024-05", OLD)
    with pytest.raises(Crash):
        store.write("1h", "XAU/USD", "2024-05", NEW, fault=_crash_at("moved-old"))
    # The final folder is missing right now; listing months recovers it.
    assert not (tmp_path / "1h" / "XAU_USD" / "2024-05").exists()
    assert store.months("1h", "XAU/USD") == ["2024-05"]
    assert store.current_bytes("1h", "XAU/USD", "2024-05") == NEW


def test_unchanged_write_is_skipped(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path)
    assert store.write("1h", "XAU/USD", "2024-05", OLD) is True
    before = os.stat(tmp_path / "1h" / "XAU_USD" / "2024-05" / "bars.parquet").st_mtime_ns
    assert store.write("1h", "XAU/USD", "2024-05", dict(OLD)) is False
    after = os.stat(tmp_path / "1h" / "XAU_USD" / "2024-05" / "bars.parquet").st_mtime_ns
    assert before == after


def test_os_error_becomes_storage_error_and_keeps_old(tmp_path: Path) -> None:
    final = tmp_path / "sym" / "2024-05"
    replace_dir(final, OLD)

    def fail(step: str) -> None:
        if step == "complete":
            raise OSError(28, "No space left on device")

    with pytest.raises(FatalError) as exc:
        replace_dir(final, NEW, fault=fail)
    assert exc.value.code == "STORAGE_WRITE_FAILED"
    assert "previous contents kept" in exc.value.message
    recover(final.parent)
    assert _contents(final) == OLD


def test_bad_file_names_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid partition file name"):
        replace_dir(tmp_path / "p", {"../escape": b"x"})


def test_json_bytes_is_deterministic() -> None:
    assert json_bytes({"b": 1, "a": [1, 2]}) == json_bytes({"a": [1, 2], "b": 1})
    assert json_bytes({"a": 1}).endswith(b"\n")


def test_bars_hash_sees_every_field() -> None:
    base = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"),
            "open": [1.0, 2.0, 3.0],
            "high": [1.0, 2.0, 3.0],
            "low": [1.0, 2.0, 3.0],
            "close": [1.0, 2.0, 3.0],
            "volume": [0.0, 0.0, 0.0],
            "quality_flag": ["ok", "ok", "ok"],
        }
    )
    h = bars_hash(base)
    for col, val in [("close", 2.5), ("volume", 1.0), ("quality_flag", "filled"), ("low", 0.5)]:
        other = base.copy()
        other.loc[1, col] = val
        assert bars_hash(other) != h, col
    shifted = base.copy()
    shifted["ts"] = shifted["ts"] + pd.Timedelta(hours=1)
    assert bars_hash(shifted) != h
