"""A worker's checkpoint in its outbox, split off :mod:`mlcore.serving._worker` (functions of its
``Worker``): :func:`restore` puts back at start-up what the last commit kept (each pair's state,
or a warm-up on catalog bars when none is usable; the read positions, the bars still waiting for
their other leg, the tally, the FX quotes and the drawdown guard, each started afresh when its
value is damaged), and :func:`checkpoint` commits the signals made, the touched pairs' state and
those values in one outbox transaction."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis

from mlcore.config import PairSpec
from mlcore.serving._bars import Bar
from mlcore.serving._pair import FxQuote
from mlcore.serving._setup import history

if TYPE_CHECKING:
    from mlcore.serving._worker import Worker

log = logging.getLogger("mlcore.serving")


def restore(worker: Worker, pairs: dict[str, PairSpec]) -> None:
    """Each pair's kept state (else a warm-up) and the kept values, at start-up."""
    states = worker.outbox.states()
    kv = worker.outbox.kv()
    for pid, rt in worker.pairs.items():
        if pid in states:
            version, engine, rest = states[pid]
            try:
                rt.restore(engine, rest)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s: saved state not usable (%s), warming afresh", pid, exc)
                states.pop(pid)
            if version != worker.version:
                log.info("%s: state made under %s, now serving %s", pid, version, worker.version)
        if pid not in states:
            bars, last = history(worker.cfg, pairs[pid], worker.spec.warm_until_ns)
            rt.warm(bars, last)
            log.info("%s: warmed on %d catalog bars", pid, len(bars))
    worker.intake.restore(kv, worker.outbox, worker.spec.warm_until_ns)
    puts: tuple[tuple[str, Callable[[Any], None]], ...] = (
        ("positions", partial(_put_positions, worker)), ("recent", partial(_put_recent, worker)),
        ("tally", partial(_put_tally, worker)), ("fx", partial(_put_fx, worker)),
        ("drawdown", worker.guard.restore),
    )  # fmt: skip
    for key, put in puts:
        if key in kv:
            try:
                put(json.loads(kv[key]))
            except (ValueError, TypeError, AttributeError, OverflowError, KeyError) as exc:
                # A damaged checkpoint value (never written so by a worker): start that
                # part afresh; bars read again are refused by the guard as duplicates.
                log.error("checkpoint %r not usable (%s: %s), starting it afresh", key,
                          type(exc).__name__, str(exc)[:200])  # fmt: skip


def _put_positions(worker: Worker, doc: Any) -> None:
    worker.source.seek({str(k): str(v) for k, v in dict(doc).items()})


def _put_recent(worker: Worker, doc: Any) -> None:
    def bar(b: list[Any]) -> Bar:
        return Bar(str(b[0]), int(b[1]), *(float(v) for v in b[2:7]))

    recent = {sym: {int(ts): bar(b) for ts, b in dict(bars).items()}
              for sym, bars in dict(doc).items() if sym in worker.recent}  # fmt: skip
    worker.recent.update(recent)


def _put_tally(worker: Worker, doc: Any) -> None:
    worker.tally.update({str(k): int(v) for k, v in dict(doc).items()})


def _put_fx(worker: Worker, doc: Any) -> None:
    worker.fx.update({str(sym): FxQuote(float(r), int(c)) for sym, (r, c) in dict(doc).items()})


def checkpoint(
    worker: Worker, positions: dict[str, str] | None = None, extra: dict[str, str] | None = None
) -> None:
    """Commit the signals kept, the touched pairs' state and the read positions (those
    given: a batch read but not yet decided is read again) at once."""
    states = {pid: (worker.version, *worker.pairs[pid].state()) for pid in worker._touched}
    read = worker.source.positions() if positions is None else positions
    kv = {
        "positions": orjson.dumps(read).decode(),
        "recent": orjson.dumps(
            {s: {str(t): list(b) for t, b in r.items()} for s, r in worker.recent.items()}
        ).decode(),
        "fx": orjson.dumps({s: [q.rate, q.close_ns] for s, q in worker.fx.items()}).decode(),
        "tally": orjson.dumps(dict(worker.tally), option=orjson.OPT_SORT_KEYS).decode(),
        "drawdown": worker.guard.state(),
    }
    guard, dead = worker.intake.take()
    worker.outbox.commit(worker._rows, states, kv | guard | (extra or {}), dead)
    worker._rows = []
    worker._touched = set()
    worker._last_commit = time.monotonic()


def heartbeat_path(root: Path, worker_id: str) -> Path:
    """Where a worker's heartbeat file lives under its serving folder."""
    return root / "heartbeats" / f"{worker_id}.json"


def heartbeat(worker: Worker) -> None:
    """The heartbeat file (which the supervisor watches) and, with Redis, the key that expires
    after heartbeat_ttl_seconds (for monitors elsewhere)."""
    beat = json.dumps({"worker": worker.spec.worker_id, "pairs": list(worker.spec.pair_ids),
                       "model_version": worker.version, "params_sha256": worker.params_sha256,
                       "theta": list(worker.theta), "config_version": worker.config_version,
                       "target_seq": worker.target_seq, "refused_seq": worker.refused_seq,
                       "pid": os.getpid(), "at": time.time(), "flags_seq": worker._applied_seq,
                       "counts": dict(worker.tally)})  # fmt: skip
    path = heartbeat_path(worker.root, worker.spec.worker_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(beat)
    if worker.client is not None:
        key = f"{worker.cfg.serving.redis.heartbeat_prefix}{worker.spec.worker_id}"
        ttl_ms = int(worker.cfg.serving.redis.heartbeat_ttl_seconds * 1000)
        try:
            worker.client.set(key, beat, px=ttl_ms)
        except redis.RedisError:
            pass  # Redis away: the file still beats; the outbox keeps the signals
        if worker._applied_seq >= 0:
            from mlcore.serving._worker_flags import report_applied_seq  # it imports this module

            report_applied_seq(worker)
