"""The ops flags as one worker applies them, split off :mod:`mlcore.serving._worker` (functions of
its ``Worker``): the flags the outbox kept at the last commit (:func:`kept_flags`), reading the
flags between batches and at least every ``FLAGS_POLL_S`` (:func:`poll_flags`,
:func:`read_flags`), committing a change at once with everything decided before it, reporting
the sequence number applied on Redis (:func:`report_applied_seq`), the one alert when the flag
store goes stale, and the end of the recovery after a crash, during which bars read again are
decided under the flags kept then (:func:`recovered`)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis

from mlcore.serving._flags import NO_FLAGS, OpsFlags, flags_json, parse_flags
from mlcore.serving._frontier import ahead, report_applied
from mlcore.serving._worker_state import checkpoint

if TYPE_CHECKING:
    from mlcore.serving._worker import Worker

log = logging.getLogger("mlcore.serving")
FLAGS_POLL_S = 0.1  # the flags are read at least this often, bars or not (propagation < 1 s)


def kept_flags(saved: str | None) -> OpsFlags:
    """The flags in force that the outbox kept (none kept: none in force)."""
    try:
        return parse_flags(saved, "outbox", complete=False) if saved is not None else NO_FLAGS
    except ValueError as exc:  # cannot happen but by a damaged file: fail closed
        log.error("flags kept in the outbox unusable (%s): halting new entries", exc)
        return OpsFlags(global_halt=True)


def poll_flags(worker: Worker, read_any: bool, before: dict[str, str]) -> None:
    # Read once the bars are here: the flags in force when they are decided, not when the
    # wait for them began (and at least every FLAGS_POLL_S without bars).
    if read_any or time.monotonic() - worker._flags_read_at >= FLAGS_POLL_S:
        read_flags(worker, before)


def recovered(worker: Worker, read_any: bool) -> None:
    """End the recovery once reading has passed the send frontier (or found no more)."""
    if worker._recovering and (
        not read_any or not ahead(worker._frontier, worker.source.positions())
    ):
        worker._recovering = False
        log.info("bars sent before the restart read again: the flags in force apply")


def read_flags(worker: Worker, positions: dict[str, str] | None = None) -> None:
    """The flags to decide by; a change is committed at once with everything decided
    before it (read up to ``positions``), so the bars after a commit were all decided
    under the flags it kept (a lost document must not take a halt with it, even across a
    restart, and bars read again after a crash are decided as they were); a stale store
    is alerted once. Not while recovering (see ``Worker.__init__``)."""
    if worker._recovering:
        return
    was_stale = worker.flags.stale
    worker._flags_read_at = time.monotonic()
    worker.flags.read()
    in_force = worker.flags.in_force()
    now = flags_json(worker.flags.flags)
    if now != worker._flags_kept or in_force != worker._flags:
        checkpoint(worker, positions, {"flags": now})
        worker._flags_kept = now
    worker._flags = in_force
    if worker.flags.flags.seq != worker._applied_seq:
        worker._applied_seq = worker.flags.flags.seq
        report_applied_seq(worker)
    if worker.flags.stale and not was_stale:
        worker.intake.alert(
            "CORE_SERVING_FLAGS_STALE",
            f"{worker.spec.worker_id}: ops flags unreadable for over "
            f"{worker.cfg.serving.flags_max_age_seconds:g} s: no new entries",
            {"worker": worker.spec.worker_id},
        )


def report_applied_seq(worker: Worker) -> None:
    """Tell Redis which flags sequence number this worker applies (Redis away: skipped). Not
    a replay's worker: its ids are the live workers' (``worker-0``...), so its report would
    stand for a live worker that may never have applied the flags."""
    if worker.client is None or worker.spec.replay_redis:
        return
    try:
        report_applied(worker.client, worker.cfg.serving.redis.ops_flags_key,
                       worker.spec.worker_id, worker._applied_seq)  # fmt: skip
    except redis.RedisError:
        pass  # Redis away: the heartbeat file says it too
