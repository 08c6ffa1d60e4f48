"""Retention of the data layers (data_retention.yaml): which month partitions and files are old
enough to go, and removing them.

A month partition ``YYYY-MM`` is past retention when it is older than the window of ``months``
months ending with the symbol's newest month (not the wall clock: the same data gives the same
result, and a symbol no longer fed keeps its last window): with ``months`` = 36 and data up to
2026-12 the window is 2024-01 .. 2026-12 and 2023-12 goes.
A partition named in ``protected`` (a registered version's lineage) never goes, whatever its
age. Files without a month in their name (ingest reports, snapshots) go by modification time.
Removal is per partition and atomic (whole or gone), under the symbol's ingest lock, so an
ingest running at the same time never sees half a month.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from mlcore.data._lock import symbol_lock
from mlcore.data._store import PartitionStore

_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

#: (timeframe, symbol, month) of a month partition.
PartitionKey = tuple[str, str, str]


@dataclass(frozen=True)
class Pruned:
    """One thing retention removed (or would remove, on a dry run)."""

    layer: str
    path: str
    reason: str


def first_kept_month(newest: str, months: int) -> str:
    """The oldest month (``YYYY-MM``) of a window of ``months`` months ending with ``newest``."""
    return str(pd.Period(newest, "M") - (months - 1))


def prune_partitions(
    root: Path,
    layer: str,
    months: int,
    protected: frozenset[PartitionKey],
    *,
    lock_root: Path,
    dry_run: bool,
) -> list[Pruned]:
    """Remove month partitions of a raw or canonical store older than each symbol's window of
    ``months`` and not in ``protected``; under the (symbol, timeframe) ingest lock kept under
    ``lock_root``."""
    store = PartitionStore(root)
    out: list[Pruned] = []
    for timeframe, symbol in list(store.iter_symbols()):
        present = [m for m in store.months(timeframe, symbol) if _MONTH_RE.match(m)]
        if not present:
            continue
        keep_from = first_kept_month(max(present), months)
        old = [m for m in present
               if m < keep_from and (timeframe, symbol, m) not in protected]  # fmt: skip
        if not old:
            continue
        if dry_run:
            out += [
                _pruned(layer, store.partition_dir(timeframe, symbol, m), keep_from) for m in old
            ]
            continue
        with symbol_lock(lock_root, symbol, timeframe):
            for month in old:
                store.remove(timeframe, symbol, month)
                out.append(_pruned(layer, store.partition_dir(timeframe, symbol, month), keep_from))
    return out


def _pruned(layer: str, path: Path, keep_from: str) -> Pruned:
    return Pruned(layer, str(path), f"month before {keep_from}")


def prune_by_age(
    folder: Path, layer: str, older_than: timedelta, now: datetime, *, dry_run: bool,
    pattern: str = "*",
) -> list[Pruned]:  # fmt: skip
    """Remove the entries of ``folder`` (files or folders matching ``pattern``) last modified
    more than ``older_than`` before ``now``; hidden entries are left alone."""
    if not folder.is_dir():
        return []
    cutoff = (now - older_than).timestamp()
    out = []
    for entry in sorted(folder.glob(pattern)):
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        if entry.stat().st_mtime >= cutoff:
            continue
        if not dry_run:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        out.append(Pruned(layer, str(entry), f"older than {older_than.days} days"))
    return out


def prune_feature_months(root: Path, months: int, *, dry_run: bool) -> list[Pruned]:
    """Remove feature-cache month folders (``{root}/{timeframe}/{key}/{YYYY-MM}``) older than
    the key's window of ``months`` (ending with its newest month) that no current build lists
    (the months named by each key's ``*.index.json``; a key whose index cannot be read keeps
    every month). A month of the latest build stays:
    later months' streaming state was built on it, and loading reads it; it goes once the
    canonical month under it has gone and a rebuild has dropped it from the index."""
    live, unreadable = feature_index_months(root)
    out: list[Pruned] = []
    if not root.is_dir():
        return out
    for tf_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for key_dir in sorted(p for p in tf_dir.iterdir() if p.is_dir()):
            if f"{tf_dir.name}/{key_dir.name}" in unreadable:
                continue
            dirs = [p for p in key_dir.iterdir() if p.is_dir() and _MONTH_RE.match(p.name)]
            if not dirs:
                continue
            keep_from = first_kept_month(max(p.name for p in dirs), months)
            for month_dir in sorted(dirs):
                m = month_dir.name
                if m >= keep_from:
                    continue
                if (tf_dir.name, key_dir.name, m) in live:
                    continue
                if not dry_run:
                    shutil.rmtree(month_dir)
                out.append(Pruned("features", str(month_dir), f"month before {keep_from}, "
                                  "in no current build"))  # fmt: skip
    return out


def feature_index_months(root: Path) -> tuple[set[tuple[str, str, str]], list[str]]:
    """(timeframe, key, month) of every month a feature build's ``*.index.json`` lists, and the
    ``timeframe/key`` folders whose index could not be read (all their months are kept)."""
    live: set[tuple[str, str, str]] = set()
    unreadable: list[str] = []
    if not root.is_dir():
        return live, unreadable
    for index in sorted(root.glob("*/*/*.index.json")):
        tf, key = index.parent.parent.name, index.parent.name
        try:
            months = json.loads(index.read_bytes())["months"]
            live.update((tf, key, str(m)) for m in months)
        except (OSError, ValueError, KeyError, TypeError):
            unreadable.append(f"{tf}/{key}")
    return live, unreadable
