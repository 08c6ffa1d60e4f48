"""The two audit writes of the control plane in one place: the action row
(``audit.analytics_actions`` through :meth:`Registry.record_action`, issue 18's chained table)
and the θ change row of ``audit.config_changes``, written in the caller's transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

import mlcore.registry as registry_module
from mlcore.registry import Registry
from mlcore.registry._common import write_audit

log = logging.getLogger("mlcore.ops")

THETA_ROLLBACK = "THETA_ROLLBACK"  # AuditEvent.THETA_ROLLBACK once the audit chain is merged


def record_action(
    registry: Registry, action: str, *, actor: str, role: str, reason: str, request_id: str,
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, result: str,
    details: Mapping[str, Any] | None = None,
) -> int | None:  # fmt: skip
    """One audited action; its id (None while the registry has no action table yet: the log
    line is then the only record)."""
    write = getattr(registry, "record_action", None)
    kinds = getattr(registry_module, "ActionResult", None)
    if write is None or kinds is None:
        log.warning("audit (no action table yet): %s", json.dumps({
            "action": action, "actor": actor, "role": role, "reason": reason,
            "request_id": request_id, "before": before, "after": after, "result": result,
            "details": details}, sort_keys=True, default=str))  # fmt: skip
        return None
    return int(
        write(action, actor=actor, role=role, reason=reason, request_id=request_id,
              before=before, after=after, result=kinds(result), details=details)
    )  # fmt: skip


def record_theta_event(
    conn: Connection, version: str, *, actor: str, notes: str, details: dict[str, Any]
) -> None:
    """The ``THETA_ROLLBACK`` row of ``audit.config_changes`` in ``conn``'s transaction."""
    write_audit(conn, THETA_ROLLBACK, version, None, None, notes, actor, details)
