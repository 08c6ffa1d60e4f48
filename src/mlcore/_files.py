"""Reading a file a user or a folder hands us without hanging on it: a FIFO, a device or
``/proc`` file would block forever or never end, so only regular files are read, and never
more than a bound."""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_NAME_BYTES = 255  # NAME_MAX of common file systems


class FileRefused(ValueError):
    """A path that is not a regular file, or one over its size bound; the message is one line
    naming the path and why."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_name(path: Path) -> None:
    """Refuse a path one of whose parts is longer than a file system allows (the OS would
    answer ENAMETOOLONG from deep inside whatever opens it)."""
    for part in path.parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise FileRefused(f"{part[:40]}...: a file name over {MAX_NAME_BYTES} bytes")


def _open(path: Path) -> int:
    """An fd of ``path`` opened without blocking (a FIFO with no writer would block open)."""
    check_name(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))


def check_regular_file(path: Path, max_bytes: int | None = None) -> int:
    """The size of ``path`` after checking it is a regular file (at most ``max_bytes``);
    :class:`FileRefused` otherwise (``OSError`` when it cannot be opened). Call it before
    handing a path to a library that reads it."""
    fd = _open(path)
    try:
        return _checked_size(path, fd, max_bytes)
    finally:
        os.close(fd)


def _checked_size(path: Path, fd: int, max_bytes: int | None) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{path}: {_kind(info.st_mode)}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise FileRefused(f"{path}: {info.st_size:,} bytes, over the {max_bytes:,} allowed")
    return info.st_size


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` (a file growing while read
    is cut there and refused); :class:`FileRefused` otherwise."""
    try:
        fd = _open(path)
    except OSError as exc:
        raise FileRefused(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        _checked_size(path, fd, max_bytes)
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise FileRefused(f"{path}: over the {max_bytes:,} bytes allowed")
        return b"".join(chunks)
    except OSError as exc:
        raise FileRefused(f"{path}: cannot read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
