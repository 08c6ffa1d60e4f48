"""The two audit writes of the control plane in one place: the action row
(``audit.analytics_actions``, hash-chained) and the θ change row of ``audit.config_changes``,
written (chained) in the caller's transaction so the θ change and its record commit together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from mlcore.registry import ActionResult, AuditEvent, Registry
from mlcore.registry._common import write_audit

THETA_ROLLBACK = AuditEvent.THETA_ROLLBACK


def record_action(
    registry: Registry, action: str, *, actor: str, role: str, reason: str, request_id: str,
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, result: ActionResult,
    details: Mapping[str, Any] | None = None,
) -> int:  # fmt: skip
    """One audited action; its ``action_id``."""
    return registry.record_action(action, actor=actor, role=role, reason=reason,
                                  request_id=request_id, before=before, after=after,
                                  result=result, details=details)  # fmt: skip


def record_theta_event(
    conn: Connection, version: str, *, actor: str, notes: str, details: dict[str, Any]
) -> int:
    """The ``THETA_ROLLBACK`` row of ``audit.config_changes`` in ``conn``'s transaction."""
    return write_audit(conn, THETA_ROLLBACK, version, None, None, notes, actor, details)
