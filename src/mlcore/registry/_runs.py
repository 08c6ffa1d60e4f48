"""Retraining runs (``audit.retrain_runs``): start, heartbeat, finish, and the two questions the
flows ask before each run (how many failed in a row; which ones stalled), each answered by one
bounded SQL query rather than by reading every run ever recorded."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, or_, select, update

from mlcore.registry._common import (
    aware,
    maybe_aware,
    maybe_float,
    need_notes,
    now,
    write_audit,
)
from mlcore.registry._errors import RegistryError
from mlcore.registry._records import ACTIVE_RUN, AuditEvent, RetrainRun, RunStatus
from mlcore.registry._tables import config_changes, retrain_runs

_R = RunStatus
_ENDINGS = tuple(s for s in RunStatus if s is not _R.RUNNING)


def _run(row: Any) -> RetrainRun:
    m = row._mapping
    return RetrainRun(
        run_id=m["run_id"], started_at=aware(m["started_at"]),
        ended_at=maybe_aware(m["ended_at"]), status=RunStatus(m["status"]),
        retry_count=int(m["retry_count"]), model_version=m["model_version"],
        theta1=maybe_float(m["theta1"]), theta2=maybe_float(m["theta2"]), metrics=m["metrics"],
        log_path=m["log_path"], error_message=m["error_message"],
        heartbeat_at=maybe_aware(m["heartbeat_at"]), flow_run_id=m["flow_run_id"],
        owner=m["owner"],
    )  # fmt: skip


def run_status(status: str) -> RunStatus:
    """``status`` as a :class:`RunStatus` a run can end with (or be retried as)."""
    try:
        found = RunStatus(status)
    except ValueError:
        found = _R.RUNNING
    if found is _R.RUNNING:
        raise RegistryError(
            "REGISTRY_RUN_INVALID_STATUS",
            f"a run ends as one of {[str(s) for s in _ENDINGS]}, not {status!r}",
        )
    return found


class RetrainRuns:
    """The retraining runs recorded on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(
        self, *, log_path: str | None = None, flow_run_id: str | None = None,
        owner: str | None = None, reason: str | None = None,
    ) -> str:  # fmt: skip
        """Record a retraining run as started (``owner``: the process running it; ``reason``:
        why it was started, kept in its metrics); returns its id."""
        run_id = str(uuid.uuid4())
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(insert(retrain_runs).values(
                run_id=run_id, started_at=stamp, status=_R.RUNNING.value, retry_count=0,
                log_path=log_path, heartbeat_at=stamp, flow_run_id=flow_run_id, owner=owner,
                metrics=None if reason is None else {"reason": reason},
            ))  # fmt: skip
        return run_id

    def heartbeat(self, run_id: str) -> None:
        """Record that a run is alive now."""
        with self.engine.begin() as conn:
            conn.execute(
                update(retrain_runs)
                .where(retrain_runs.c.run_id == run_id)
                .values(heartbeat_at=now())
            )

    def finish(
        self, run_id: str, status: str, *, retry_count: int = 0,
        model_version: str | None = None, theta: tuple[float, float] | None = None,
        metrics: dict[str, Any] | None = None, error_message: str | None = None,
    ) -> None:  # fmt: skip
        """Record how a run ended (or that it is being retried); ``metrics`` None keeps what
        the run recorded (its start reason)."""
        ending = run_status(status)
        if ending in (_R.FAILED, _R.ABORTED) and not error_message:
            raise RegistryError(
                "REGISTRY_RUN_INVALID_STATUS", f"a {ending} run needs its error message"
            )
        values: dict[str, Any] = {
            "status": ending.value, "retry_count": retry_count, "model_version": model_version,
            "ended_at": None if ending is _R.RETRYING else now(),
        }  # fmt: skip
        if metrics is not None:
            values["metrics"] = metrics
        if error_message is not None:
            # A run that succeeded after retries keeps the error it retried.
            values["error_message"] = error_message
        if theta is not None:
            values["theta1"], values["theta2"] = theta
        with self.engine.begin() as conn:
            done = conn.execute(
                update(retrain_runs).where(retrain_runs.c.run_id == run_id).values(**values)
            ).rowcount
        if done != 1:
            raise _not_recorded(run_id)

    def get(self, run_id: str) -> RetrainRun:
        """One run; ``RegistryError`` if it is not recorded."""
        with self.engine.connect() as conn:
            row = conn.execute(select(retrain_runs).where(retrain_runs.c.run_id == run_id)).first()
        if row is None:
            raise _not_recorded(run_id)
        return _run(row)

    def recent(self, limit: int | None = None) -> list[RetrainRun]:
        """Retraining runs, newest first (the newest ``limit`` if given)."""
        query = select(retrain_runs).order_by(retrain_runs.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query)]

    def active(self) -> list[RetrainRun]:
        """Runs still marked running or retrying, newest first."""
        query = (
            select(retrain_runs)
            .where(retrain_runs.c.status.in_([s.value for s in ACTIVE_RUN]))
            .order_by(retrain_runs.c.started_at.desc())
        )
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query)]

    def stalled(self, older_than_s: float) -> list[RetrainRun]:
        """Runs still marked running or retrying whose last heartbeat (or start, if none) is
        older than ``older_than_s`` seconds: their process died or hangs."""
        cutoff = now() - timedelta(seconds=older_than_s)
        last_sign = func.coalesce(retrain_runs.c.heartbeat_at, retrain_runs.c.started_at)
        query = (
            select(retrain_runs)
            .where(retrain_runs.c.status.in_([s.value for s in ACTIVE_RUN]))
            .where(last_sign < cutoff)
            .order_by(retrain_runs.c.started_at.desc())
        )
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query)]

    def consecutive_failures(self) -> int:
        """Failed runs since the last successful one and the last resume (retries, running and
        aborted runs skipped): one ``COUNT`` over the runs after the later of the two."""
        last_success = (
            select(func.max(retrain_runs.c.started_at))
            .where(retrain_runs.c.status == _R.SUCCESS.value)
            .scalar_subquery()
        )
        last_resume = (
            select(func.max(config_changes.c.changed_at))
            .where(config_changes.c.event == AuditEvent.RETRAIN_RESUMED.value)
            .scalar_subquery()
        )
        query = (
            select(func.count())
            .select_from(retrain_runs)
            .where(retrain_runs.c.status == _R.FAILED.value)
            .where(or_(last_success.is_(None), retrain_runs.c.started_at > last_success))
            .where(or_(last_resume.is_(None), retrain_runs.c.started_at >= last_resume))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def resume(self, *, actor: str, notes: str) -> int:
        """Clear a failure stop: failures before now no longer count. Returns how many were
        cleared."""
        notes = need_notes(notes, "resuming retraining")
        cleared = self.consecutive_failures()
        with self.engine.begin() as conn:
            write_audit(
                conn,
                AuditEvent.RETRAIN_RESUMED,
                None,
                None,
                None,
                notes,
                actor,
                {"failures_cleared": cleared},
            )
        return cleared


def _not_recorded(run_id: str) -> RegistryError:
    return RegistryError("REGISTRY_RUN_NOT_FOUND", f"retrain run {run_id!r} is not recorded")
