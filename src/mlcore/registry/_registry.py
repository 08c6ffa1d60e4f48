"""The registry: one facade over four parts sharing one engine, so callers keep one object.

- :class:`~mlcore.registry._versions.Versions`: model versions and their state machine;
- :class:`~mlcore.registry._runs.RetrainRuns`: retraining runs, failures, stalled runs;
- :class:`~mlcore.registry._alerts.Alerts`: alerts raised by flows and serving;
- :class:`~mlcore.registry._artifacts.Artifacts`: served files, verify, restore, prune;
- :class:`~mlcore.registry._audit.AuditTrail`: the hash-chained audit tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from mlcore.errors import Severity
from mlcore.registry._alerts import Alerts
from mlcore.registry._artifacts import Artifacts
from mlcore.registry._audit import AuditTrail, ChainReport
from mlcore.registry._errors import RegistryError
from mlcore.registry._records import (
    ActionRecord,
    ActionResult,
    Alert,
    AuditEvent,
    ModelRecord,
    ModelStatus,
    RetrainRun,
    Rollback,
    StatusChange,
)
from mlcore.registry._runs import RetrainRuns
from mlcore.registry._state_at import StateAt
from mlcore.registry._store import ArtifactStore
from mlcore.registry._versions import Versions


class Registry:
    """The registry on an engine (see :func:`mlcore.registry.open_registry`), with the artifact
    store that keeps an archived copy of every registered version.

    Its parts are ``versions``, ``retrain_runs``, ``alert_log`` and ``artifacts``, one engine
    for all; the methods below delegate to them.
    """

    def __init__(self, engine: Engine, store: ArtifactStore | None = None) -> None:
        self.engine = engine
        self.store = store
        self.versions = Versions(engine, store)
        self.retrain_runs = RetrainRuns(engine)
        self.alert_log = Alerts(engine)
        self.artifacts = Artifacts(engine, self.versions, store)
        self.audit = AuditTrail(engine)

    # -- versions -----------------------------------------------------------------------
    def get(self, version: str) -> ModelRecord:
        """The version's record; ``RegistryError`` if it is not registered."""
        return self.versions.get(version)

    def records(self, status: str | None = None) -> list[ModelRecord]:
        """Every record (or those with ``status``), newest first."""
        return self.versions.records(status)

    def deployed(self) -> ModelRecord | None:
        """The version in service, if any."""
        return self.versions.deployed()

    def history(self, version: str | None = None) -> list[StatusChange]:
        """``audit.config_changes`` rows (of one version), oldest first."""
        return self.versions.history(version)

    def register(
        self, folder: Path, *, actor: str, notes: str, status: str = ModelStatus.DRAFT,
        theta: tuple[float, float] | None = None,
    ) -> ModelRecord:  # fmt: skip
        """Add the model version in ``folder`` (as ``draft`` or ``candidate``)."""
        return self.versions.register(folder, actor=actor, notes=notes, status=status,
                                      theta=theta)  # fmt: skip

    def transition(
        self, version: str, to: str, *, actor: str, notes: str,
        theta: tuple[float, float] | None = None, override: dict[str, Any] | None = None,
    ) -> ModelRecord:  # fmt: skip
        """Move ``version`` to ``to`` along the state machine (see :class:`Versions`);
        ``override`` (what an operator overrode and why) goes into the audit row. A version
        goes to ``approved`` or ``deployed`` only once its served files match the checksums
        recorded at registration (damaged ones restored from the artifact store first);
        ``RegistryError`` ``REGISTRY_ARTIFACT_DAMAGED`` naming the files otherwise."""
        if to in (ModelStatus.APPROVED, ModelStatus.DEPLOYED):
            try:
                self.checked(version, actor=actor)
            except RegistryError as exc:
                if exc.code != "REGISTRY_ARTIFACT_DAMAGED":
                    raise
                raise RegistryError(
                    exc.code, f"{exc.message.removesuffix('; not used')}; not promoted to {to}"
                ) from None
        return self.versions.transition(version, to, actor=actor, notes=notes, theta=theta,
                                        override=override)  # fmt: skip

    def rollback(self, *, actor: str, notes: str, expected: str | None = None) -> Rollback:
        """Put back the version deployed before the one in service (only if ``expected`` is
        the one in service, when given); returns what was rolled back and what is deployed."""
        return self.versions.rollback(actor=actor, notes=notes, expected=expected)

    # -- retraining runs ----------------------------------------------------------------
    def start_run(
        self, *, log_path: str | None = None, flow_run_id: str | None = None,
        owner: str | None = None, reason: str | None = None,
    ) -> str:  # fmt: skip
        """Record a retraining run as started (``owner``: the process running it; ``reason``:
        why it was started); returns its id."""
        return self.retrain_runs.start(log_path=log_path, flow_run_id=flow_run_id, owner=owner,
                                       reason=reason)  # fmt: skip

    def heartbeat(self, run_id: str) -> None:
        """Record that a run is alive now."""
        self.retrain_runs.heartbeat(run_id)

    def finish_run(
        self, run_id: str, status: str, *, retry_count: int = 0,
        model_version: str | None = None, theta: tuple[float, float] | None = None,
        metrics: dict[str, Any] | None = None, error_message: str | None = None,
    ) -> None:  # fmt: skip
        """Record how a run ended (or that it is being retried)."""
        self.retrain_runs.finish(run_id, status, retry_count=retry_count,
                                 model_version=model_version, theta=theta, metrics=metrics,
                                 error_message=error_message)  # fmt: skip

    def run(self, run_id: str) -> RetrainRun:
        """One retraining run; ``RegistryError`` if it is not recorded."""
        return self.retrain_runs.get(run_id)

    def runs(self, limit: int | None = None) -> list[RetrainRun]:
        """Retraining runs, newest first (the newest ``limit`` if given)."""
        return self.retrain_runs.recent(limit)

    def active_runs(self) -> list[RetrainRun]:
        """Runs still marked running or retrying, newest first."""
        return self.retrain_runs.active()

    def stalled_runs(self, older_than_s: float) -> list[RetrainRun]:
        """Running or retrying runs whose last heartbeat is older than ``older_than_s``."""
        return self.retrain_runs.stalled(older_than_s)

    def consecutive_failures(self) -> int:
        """Failed runs since the last successful one or the last resume."""
        return self.retrain_runs.consecutive_failures()

    def resume_retraining(self, *, actor: str, notes: str) -> None:
        """Clear a failure stop: failures before now no longer count."""
        self.retrain_runs.resume(actor=actor, notes=notes)

    # -- alerts -------------------------------------------------------------------------
    def raise_alert(
        self, code: str, message: str, *, channel: str, severity: str = Severity.ERROR,
        run_id: str | None = None, details: dict[str, Any] | None = None,
    ) -> str:  # fmt: skip
        """Record an alert in ``audit.alerts``; returns its id."""
        return self.alert_log.raise_alert(code, message, channel=channel, severity=severity,
                                          run_id=run_id, details=details)  # fmt: skip

    def alerts(self, code: str | None = None, limit: int | None = None) -> list[Alert]:
        """Recorded alerts (or those of one code), newest first."""
        return self.alert_log.recent(code, limit)

    # -- artifacts ----------------------------------------------------------------------
    def served_folder(self, version: str) -> Path:
        """Where the version's files are served from (``models_root/{version}``)."""
        return self.artifacts.served_folder(version)

    def verify(self, version: str) -> dict[str, str]:
        """Served files that are missing or fail the checksums the registry recorded."""
        return self.artifacts.verify(version)

    def checked(self, version: str, *, actor: str) -> Path:
        """The version's served folder, verified against the recorded checksums (restored
        from the artifact store first if damaged); ``RegistryError`` if it cannot be."""
        return self.artifacts.checked(version, actor=actor)

    def restore(self, version: str, *, actor: str) -> dict[str, str]:
        """Replace the version's damaged served files with their verified archived copies."""
        return self.artifacts.restore(version, actor=actor)

    def prune(self, keep: int, *, actor: str, dry_run: bool = False) -> list[str]:
        """Delete the files of versions beyond the newest ``keep`` (never a rollback target)."""
        return self.artifacts.prune(keep, actor=actor, dry_run=dry_run)

    # -- audit trail --------------------------------------------------------------------
    def record_action(
        self, action: str, *, actor: str, role: str, reason: str, request_id: str,
        before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
        result: ActionResult, details: Mapping[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """One row of ``audit.analytics_actions`` (append-only, hash-chained); its id."""
        return self.audit.record_action(action, actor=actor, role=role, reason=reason,
                                        request_id=request_id, before=before, after=after,
                                        result=result, details=details)  # fmt: skip

    def actions(
        self, *, action: str | None = None, since: datetime | None = None
    ) -> list[ActionRecord]:
        """``audit.analytics_actions`` rows (of one action, at or after ``since``), oldest
        first."""
        return self.audit.actions(action=action, since=since)

    def record_config_event(
        self, event: AuditEvent, *, actor: str, notes: str,
        details: Mapping[str, Any] | None = None, model_version: str | None = None,
        old_status: str | None = None, new_status: str | None = None,
    ) -> int:  # fmt: skip
        """One row of ``audit.config_changes`` (append-only, hash-chained); its id."""
        return self.audit.record_config_event(event, actor=actor, notes=notes, details=details,
                                              model_version=model_version,
                                              old_status=old_status,
                                              new_status=new_status)  # fmt: skip

    def verify_audit(self, heads: Iterable[str] = ()) -> ChainReport:
        """Check the hash chains of both audit tables, row by row (and that the row hashes
        ``heads``, recorded earlier, are still there)."""
        return self.audit.verify(heads)

    def state_at(self, at: datetime) -> StateAt:
        """What was in force at ``at``: model version, θ, config version, flags, and who
        changed each last (from the audit trail)."""
        return self.audit.state_at(at)
