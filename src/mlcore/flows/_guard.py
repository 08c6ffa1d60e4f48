"""A retraining run's bookkeeping: its row in ``audit.retrain_runs``, its heartbeats, its
retries, its failure and the failure stop, and the alerts they raise (``audit.alerts`` and the
log). Everything is in the registry database, so a run of any process sees the same state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mlcore._logging import get_logger
from mlcore.config import RetrainPolicy
from mlcore.errors import FatalError, MlcoreError, RetryableError, Severity
from mlcore.flows._owner import is_gone, parse_owner, this_process
from mlcore.registry import Registry, RetrainRun, RunStatus

log = get_logger("flows")

RETRAIN_FAILED = "CORE_RETRAIN_FAILED"
RETRAIN_STOPPED = "CORE_RETRAIN_STOPPED"
RETRAIN_SKIPPED = "CORE_RETRAIN_SKIPPED"
RETRAIN_HEARTBEAT = "CORE_RETRAIN_HEARTBEAT"
RETRAIN_ORPHANED = "CORE_RETRAIN_ORPHANED"
RETRAIN_RETRYING = "CORE_RETRAIN_RETRYING"


class RetrainRefused(FatalError, RuntimeError):
    """A retraining run that did not start: ``RETRAIN_GUARD_STOPPED`` (stopped after
    consecutive failures; a person resumes it) or ``RETRAIN_GUARD_BUSY`` (another run is on).
    Still a ``RuntimeError``, as it was before it had a code."""

    str_with_code = False


def short(exc: BaseException) -> str:
    """An exception as one line: its type (or code) and its message's first line."""
    if isinstance(exc, MlcoreError):
        lines = exc.message.strip().splitlines()
        return f"{exc.code}: {lines[0] if lines else ''}".rstrip(": ")
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def transient(exc: BaseException) -> bool:
    """Whether a retry may mend ``exc``: a :class:`RetryableError` (a data API, Redis or the
    database away), or an OS-level failure (a full disk, a lost mount, a dropped connection,
    a timeout). Anything else — the project's input and configuration errors, a ValueError
    from bad data, a bug — gives the same result on every try."""
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, MlcoreError):
        return False
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OSError | TimeoutError | OperationalError | InterfaceError)


@dataclass
class RunGuard:
    """One retraining run, as recorded in the registry database."""

    registry: Registry
    policy: RetrainPolicy
    run_id: str
    step: str = "starting"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def alert(
        self, code: str, message: str, severity: Severity = Severity.ERROR, **details: Any
    ) -> str:
        """Raise an alert: a row in ``audit.alerts`` and an error line in the log."""
        alert_id = self.registry.raise_alert(
            code,
            message,
            channel=self.policy.notification_channel,
            severity=severity,
            run_id=self.run_id,
            details=details or None,
        )
        log.error(
            "alert",
            code=code,
            message=message,
            run_id=self.run_id,
            alert_id=alert_id,
            channel=self.policy.notification_channel,
            **details,
        )
        return alert_id

    def retry_count(self) -> int:
        """Retries this run has made so far."""
        return self.registry.run(self.run_id).retry_count

    def on_retry(self, task_name: str, exc: BaseException | None) -> bool:
        """A task failed: retry it (recorded as ``retrying``) only when waiting can mend the
        failure (:func:`transient`); bad input, a bad configuration or a refusal fails the run
        at once with its own message, instead of sitting on a retry delay."""
        if exc is None or not transient(exc):
            return False
        with self._lock:
            count = self.retry_count() + 1
            why = f"{task_name}: {short(exc) if exc is not None else 'failed'}"
            self.registry.finish_run(
                self.run_id, RunStatus.RETRYING, retry_count=count, error_message=why
            )
        log.warning(
            "retrying",
            code=RETRAIN_RETRYING,
            run_id=self.run_id,
            task=task_name,
            retry=count,
            error=why,
        )
        return True

    def retry_condition(self) -> Callable[..., bool]:
        """Prefect's ``retry_condition_fn`` for this run (a plain function, as Prefect asks)."""

        def should_retry(task: Any, _task_run: Any, state: Any) -> bool:
            data = getattr(state, "data", None)
            return self.on_retry(task.name, data if isinstance(data, BaseException) else None)

        return should_retry

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Record a heartbeat every ``heartbeat_seconds`` while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.policy.heartbeat_seconds):
                try:
                    self.registry.heartbeat(self.run_id)
                    log.info("heartbeat", run_id=self.run_id, step=self.step)
                except Exception as exc:  # the run goes on; a stalled beat shows as stale
                    log.warning("heartbeat not recorded", run_id=self.run_id, error=short(exc))

        thread = threading.Thread(target=beat, name=f"heartbeat-{self.run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def failed(self, exc: BaseException) -> None:
        """Record the run as failed; on the ``max_consecutive_failures``-th failure in a row,
        stop retraining and raise the alert. An interrupted run (Ctrl-C, a termination
        signal) is recorded as aborted and is no failure of retraining."""
        why = f"{self.step}: {short(exc)}"
        if not isinstance(exc, Exception):
            self.registry.finish_run(self.run_id, RunStatus.ABORTED, retry_count=self.retry_count(),
                                     error_message=f"interrupted at {why}")  # fmt: skip
            log.warning("retraining run interrupted", run_id=self.run_id, step=self.step)
            return
        self.registry.finish_run(self.run_id, RunStatus.FAILED, retry_count=self.retry_count(),
                                 error_message=why)  # fmt: skip
        self.alert(RETRAIN_FAILED, f"retraining run failed at {why}", step=self.step)
        failures = self.registry.consecutive_failures()
        if failures >= self.policy.max_consecutive_failures:
            self.alert(
                RETRAIN_STOPPED,
                f"retraining stopped after {failures} consecutive failed runs (last: {why}); "
                "`mlcore flows resume --notes ...` resumes it",
                severity=Severity.CRITICAL, failures=failures,
            )  # fmt: skip


def _sweep(registry: Registry, policy: RetrainPolicy) -> None:
    """Abort the runs still marked running whose process is gone: known dead on this host
    (``CORE_RETRAIN_ORPHANED``, at once), or silent for too long (``CORE_RETRAIN_HEARTBEAT``)."""
    here = this_process()
    for run in registry.active_runs():
        owner = parse_owner(run.owner)
        if owner is not None and is_gone(owner, here):
            why = f"its process ({owner.describe()}) is gone: it was killed or crashed"
            _abort(registry, policy, run, RETRAIN_ORPHANED, why)
    stale_s = policy.heartbeat_seconds * policy.heartbeat_stale_factor
    for run in registry.stalled_runs(stale_s):
        why = (
            f"no heartbeat for over {stale_s:g} s (last {run.heartbeat_at}): its process "
            "died or hangs"
        )
        _abort(registry, policy, run, RETRAIN_HEARTBEAT, why)


def _abort(registry: Registry, policy: RetrainPolicy, run: RetrainRun, code: str, why: str) -> None:
    registry.finish_run(
        run.run_id, RunStatus.ABORTED, retry_count=run.retry_count, error_message=why
    )
    RunGuard(registry, policy, run.run_id).alert(
        code, f"retraining run {run.run_id} aborted: {why}"
    )


def _refuse(guard: RunGuard, code: str, why: str) -> RetrainRefused:
    guard.registry.finish_run(guard.run_id, RunStatus.ABORTED, error_message=why)
    guard.alert(RETRAIN_SKIPPED, f"retraining run not started: {why}", Severity.WARNING)
    return RetrainRefused(code, why)


def check_start(registry: Registry, policy: RetrainPolicy, reason: str | None = None) -> None:
    """Before a retraining run starts its flow (and Prefect its server): abort the runs whose
    process is gone, and refuse (``RetrainRefused``, recorded as an aborted run) when
    retraining is stopped or another run is on. :func:`begin_run` checks again in the flow."""
    _sweep(registry, policy)
    refusal = _refusal(registry, policy, None)
    if refusal is not None:
        run_id = registry.start_run(owner=this_process().text(), reason=reason)
        guard = RunGuard(registry, policy, run_id)
        raise _refuse(guard, *refusal)


def begin_run(
    registry: Registry, policy: RetrainPolicy, flow_run_id: str | None, reason: str | None = None
) -> RunGuard:
    """Start a recorded run (with the ``reason`` it was started for), owned by this process,
    after aborting runs whose process is gone. ``RetrainRefused`` (the refusal recorded as an
    aborted run) when retraining is stopped or another run is on."""
    _sweep(registry, policy)
    owner = this_process().text()
    run_id = registry.start_run(flow_run_id=flow_run_id, owner=owner, reason=reason)
    guard = RunGuard(registry, policy, run_id)
    refusal = _refusal(registry, policy, guard.run_id)
    if refusal is not None:
        raise _refuse(guard, *refusal)
    return guard


def _refusal(
    registry: Registry, policy: RetrainPolicy, run_id: str | None
) -> tuple[str, str] | None:
    """Why the run ``run_id`` (None: a run about to start) may not go on (its code and
    reason), or None."""
    failures = registry.consecutive_failures()
    if failures >= policy.max_consecutive_failures:
        return "RETRAIN_GUARD_STOPPED", (
            f"retraining is stopped after {failures} consecutive failed runs; resume it with "
            "`mlcore flows resume --notes ...` once the cause is fixed"
        )
    others = [r for r in registry.active_runs() if r.run_id != run_id]
    if others:
        run = others[0]
        owner = parse_owner(run.owner)
        by = f" by {owner.describe()}" if owner is not None else ""
        stale_s = policy.heartbeat_seconds * policy.heartbeat_stale_factor
        return "RETRAIN_GUARD_BUSY", (
            f"retraining run {run.run_id} (started {run.started_at:%Y-%m-%d %H:%M:%S} UTC{by}, "
            f"last heartbeat {run.heartbeat_at or run.started_at:%H:%M:%S}) is still in "
            f"progress; wait for it to end, or, if its process is gone, for its heartbeat to be "
            f"{stale_s:g} s old, when the next run aborts it"
        )
    return None
