"""Stage progress for long work: one line per finished stage with the time since the run
began, so a log written off a terminal is never silent for minutes.

Stage code calls :func:`stage_done` (or wraps a block in :func:`stage`); it prints nothing
unless a caller (the command line) installed a sink with :func:`reporting`. Stage code never
imports the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

Sink = Callable[[str], None]


@dataclass
class _Run:
    sink: Sink
    started: float = field(default_factory=time.perf_counter)


_RUN: ContextVar[_Run | None] = ContextVar("mlcore_progress_run", default=None)


def format_line(elapsed_s: float, name: str, detail: str = "", took_s: float | None = None) -> str:
    """One progress line: ``[  12.3 s] ingest: 6 files, 105,120 rows (4.1 s)``."""
    text = f"[{elapsed_s:6.1f} s] {name}"
    if detail:
        text += f": {detail}"
    if took_s is not None:
        text += f" ({took_s:.1f} s)"
    return text


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Send the stage lines of the work done inside this block to ``sink``."""
    token = _RUN.set(_Run(sink))
    try:
        yield
    finally:
        _RUN.reset(token)


def stage_done(name: str, detail: str = "", took_s: float | None = None) -> None:
    """Report that stage ``name`` finished (``took_s`` seconds, if known); a no-op when no
    sink is installed."""
    run = _RUN.get()
    if run is not None:
        run.sink(format_line(time.perf_counter() - run.started, name, detail, took_s))


@dataclass
class Stage:
    """What a running stage reports when it ends (set ``detail`` inside the block)."""

    name: str
    detail: str = ""


@contextmanager
def stage(name: str) -> Iterator[Stage]:
    """Time the block and report it as stage ``name`` when it ends without error."""
    info = Stage(name)
    t0 = time.perf_counter()
    yield info
    stage_done(info.name, info.detail, time.perf_counter() - t0)
