"""Crash-safe replacement of a whole partition folder.

A partition is written into a hidden sibling ``.NAME.tmp-ID`` (each file fsynced, then a
``__complete`` marker), the old folder is renamed to ``.NAME.old-ID`` and the new one renamed
into place. A crash at any point leaves either the old or the new complete partition;
:func:`recover` finishes or undoes an interrupted swap (or removal, ``.NAME.del-ID``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from mlcore.errors import FatalError

_MARK = "__complete"
FaultHook = Callable[[str], None]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, durable: bool = True) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())


_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")
STALE_TEMP_S = 3600.0  # no live write of one file takes this long


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def sweep_temp(folder: Path, *, now_s: float | None = None) -> list[Path]:
    """Remove the temp files :func:`write_atomic` left in ``folder`` when its writer died.

    A temp file names its writer's process id: it is stale once that process is gone, or
    after :data:`STALE_TEMP_S` (a reused id; names without an id). A live writer's file stays.
    Returns the files removed.
    """
    now = time.time() if now_s is None else now_s
    removed: list[Path] = []
    try:
        entries = [e for e in folder.iterdir() if e.name.startswith(".") and ".tmp-" in e.name]
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.is_file() or entry.is_symlink():
                continue  # a partition's temp folder: recover() handles it under the lock
            match = _TEMP_RE.match(entry.name)
            dead = match is not None and not _alive(int(match.group(1)))
            if dead or now - entry.stat().st_mtime > STALE_TEMP_S:
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue  # gone meanwhile (its writer renamed it, or another sweep)
    return removed


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write one file atomically: a fsynced hidden temp file renamed over ``path``.
    ``durable=False`` skips the fsync: readers still never see half a file, but a power cut
    may lose the newest version (for files re-derivable from a durable record). Temp files a
    dead writer left in the folder are removed first (:func:`sweep_temp`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_file(tmp, data, durable)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FatalError(
            "STORAGE_WRITE_FAILED",
            f"{path}: write failed ({exc.strerror or exc}); previous contents kept",
            details={"path": str(path)},
        ) from exc


def recover(parent: Path) -> None:
    """Finish or roll back interrupted swaps under ``parent``; drop incomplete temp folders."""
    if not parent.is_dir():
        return
    entries = list(parent.iterdir())
    for gone in (e for e in entries if e.name.startswith(".") and ".del-" in e.name):
        shutil.rmtree(gone)  # a removal that was under way: finish it
    for old in (e for e in entries if e.name.startswith(".") and ".old-" in e.name):
        name = old.name[1:].split(".old-")[0]
        final = parent / name
        token = old.name.split(".old-")[1]
        tmp = parent / f".{name}.tmp-{token}"
        if final.exists():
            shutil.rmtree(old)
        elif tmp.is_dir() and (tmp / _MARK).exists():
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(old, final)
    for tmp in (e for e in parent.iterdir() if e.name.startswith(".") and ".tmp-" in e.name):
        name = tmp.name[1:].split(".tmp-")[0]
        final = parent / name
        if not final.exists() and (tmp / _MARK).exists():
            os.rename(tmp, final)
        else:
            shutil.rmtree(tmp)


def replace_dir(final: Path, files: Mapping[str, bytes], fault: FaultHook | None = None) -> None:
    """Atomically make ``final`` a folder holding exactly ``files`` (name -> bytes)."""
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    recover(parent)
    token = uuid.uuid4().hex[:12]
    tmp = parent / f".{final.name}.tmp-{token}"
    old = parent / f".{final.name}.old-{token}"
    hook = fault or (lambda _step: None)
    try:
        tmp.mkdir()
        for name, data in files.items():
            if "/" in name or name.startswith(".") or name == _MARK:
                raise ValueError(f"invalid partition file name {name!r}")
            _write_file(tmp / name, data)
            hook(f"wrote:{name}")
        _write_file(tmp / _MARK, b"")
        _fsync_dir(tmp)
        hook("complete")
        if final.exists():
            os.rename(final, old)
            hook("moved-old")
        os.rename(tmp, final)
        hook("swapped")
        _fsync_dir(parent)
        if old.exists():
            shutil.rmtree(old)
    except OSError as exc:
        raise FatalError(
            "STORAGE_WRITE_FAILED",
            f"{final}: partition write failed ({exc.strerror or exc}); previous contents kept",
            details={"path": str(final)},
        ) from exc


def remove_dir(final: Path) -> None:
    """Remove a partition folder atomically: renamed away first, so a crash leaves it whole
    or gone (:func:`recover` finishes the removal)."""
    if not final.exists():
        return
    gone = final.parent / f".{final.name}.del-{uuid.uuid4().hex[:12]}"
    try:
        os.rename(final, gone)
        shutil.rmtree(gone)
    except OSError as exc:
        raise FatalError(
            "STORAGE_WRITE_FAILED",
            f"{final}: partition removal failed ({exc.strerror or exc})",
            details={"path": str(final)},
        ) from exc


def read_files(folder: Path) -> list[str]:
    """List the data files of a partition folder (without the completion marker)."""
    return sorted(p.name for p in folder.iterdir() if p.name != _MARK)
