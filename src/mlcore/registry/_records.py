"""What the registry hands across stage boundaries: statuses as ``StrEnum`` (their values are
the strings stored in the database, so rows and JSON are unchanged) and typed rows."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from mlcore.errors import Severity


class ModelStatus(StrEnum):
    """Where a model version stands in the registry's state machine."""

    DRAFT = "draft"
    CANDIDATE = "candidate"
    APPROVED = "approved"
    REJECTED = "rejected"
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled_back"


class RunStatus(StrEnum):
    """How a retraining run stands (``audit.retrain_runs.status``)."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    RETRYING = "retrying"
    ABORTED = "aborted"


class AuditEvent(StrEnum):
    """What an ``audit.config_changes`` row records."""

    MODEL_REGISTERED = "MODEL_REGISTERED"
    MODEL_STATUS = "MODEL_STATUS"
    CONFIG_ROLLBACK = "CONFIG_ROLLBACK"
    MODEL_RESTORED = "MODEL_RESTORED"
    MODEL_PRUNED = "MODEL_PRUNED"
    RETRAIN_RESUMED = "RETRAIN_RESUMED"
    CONFIG_VALIDATED = "CONFIG_VALIDATED"
    CONFIG_PR_CREATED = "CONFIG_PR_CREATED"
    CONFIG_APPROVED = "CONFIG_APPROVED"
    CONFIG_MERGED = "CONFIG_MERGED"
    CONFIG_APPLIED = "CONFIG_APPLIED"
    THETA_ROLLBACK = "THETA_ROLLBACK"


class ActionResult(StrEnum):
    """How an action recorded in ``audit.analytics_actions`` ended."""

    OK = "ok"
    DENIED = "denied"
    REFUSED = "refused"
    FAILED = "failed"


S = ModelStatus
TRANSITIONS: Final[dict[ModelStatus, tuple[ModelStatus, ...]]] = {
    S.DRAFT: (S.CANDIDATE, S.REJECTED),
    S.CANDIDATE: (S.APPROVED, S.REJECTED),
    S.APPROVED: (S.DEPLOYED, S.REJECTED),
    S.DEPLOYED: (S.APPROVED, S.ROLLED_BACK),
    S.ROLLED_BACK: (S.DEPLOYED, S.REJECTED),
    S.REJECTED: (),
}
ACTIVE_RUN: Final = (RunStatus.RUNNING, RunStatus.RETRYING)


class _Row:
    """``row["column"]`` as well as ``row.column``: callers written for the plain dict rows
    these records replace keep working."""

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict (column → value)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelRecord(_Row):
    """One row of ``core.model_registry``."""

    model_version: str
    status: ModelStatus
    created_at: datetime
    created_by: str
    updated_at: datetime
    deployed_at: datetime | None
    timeframe: str
    artifact_path: str
    theta1: float | None
    theta2: float | None
    code_hash: str
    data_hash: str
    seed: int
    notes: str
    metrics: dict[str, Any]
    checksums: dict[str, str]


@dataclass(frozen=True)
class RetrainRun(_Row):
    """One row of ``audit.retrain_runs``."""

    run_id: str
    started_at: datetime
    ended_at: datetime | None
    status: RunStatus
    retry_count: int
    model_version: str | None
    theta1: float | None
    theta2: float | None
    metrics: dict[str, Any] | None
    log_path: str | None
    error_message: str | None
    heartbeat_at: datetime | None
    flow_run_id: str | None
    owner: str | None = None


@dataclass(frozen=True)
class StatusChange(_Row):
    """One row of ``audit.config_changes``: a registration, status change, rollback, restore,
    prune or resume, with who did it and why."""

    change_id: int
    changed_at: datetime
    actor: str
    event: str
    model_version: str | None
    old_status: ModelStatus | str | None  # a str: a state other than a model's (a config's)
    new_status: ModelStatus | str | None
    notes: str
    details: dict[str, Any] | None


@dataclass(frozen=True)
class ActionRecord(_Row):
    """One row of ``audit.analytics_actions``: who did what (with which role, why, under which
    request id), the state before and after, and how it ended; hash-chained."""

    action_id: int
    occurred_at: datetime
    actor: str
    role: str
    action: str
    request_id: str
    reason: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    result: ActionResult
    details: dict[str, Any] | None
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class Rollback:
    """What one rollback did: the version it took out of service and the one it put back
    (read in the rollback's own transaction, so it is what this rollback did)."""

    rolled_back: str
    deployed: ModelRecord


@dataclass(frozen=True)
class Alert(_Row):
    """One row of ``audit.alerts``."""

    alert_id: str
    raised_at: datetime
    code: str
    severity: Severity
    channel: str
    message: str
    run_id: str | None
    details: dict[str, Any] | None
