"""Recording what the API did and refused, through the registry's audit trail
(``Registry.record_action``, ``audit.analytics_actions``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mlcore.errors import Severity
from mlcore.registry import ActionResult, Registry

log = logging.getLogger("mlcore.api")

#: Ops actions that notify when done (model and θ rollbacks alert in mlcore.ops).
_NOTIFIED = {
    "ops.flatten": ("OPS_ACTION_FLATTEN", Severity.CRITICAL),
    "ops.resume.request": ("OPS_ACTION_RESUME_REQUEST", Severity.INFO),
    "ops.resume.approve": ("OPS_ACTION_RESUME_APPROVE", Severity.INFO),
    "ops.resume.step": ("OPS_ACTION_RESUME_STEP", Severity.INFO),
    "ops.rollback": ("OPS_ACTION_ROLLBACK", Severity.WARNING),
}


def action_alert(action: str, details: Mapping[str, Any] | None) -> tuple[str, Severity] | None:
    """The alert code and severity a done ops action raises (a hard halt and a flatten are
    critical: they page), or None."""
    if action == "ops.halt":
        hard = (details or {}).get("level") == "hard"
        return "OPS_ACTION_HALT", Severity.CRITICAL if hard else Severity.WARNING
    return _NOTIFIED.get(action)


def _notify(registry: Registry, action: str, actor: str, reason: str, request_id: str,
            details: Mapping[str, Any] | None) -> None:  # fmt: skip
    found = action_alert(action, details)
    if found is None:
        return
    code, severity = found
    pairs = (details or {}).get("pairs")
    scope = "the whole book" if pairs is None else ", ".join(map(str, pairs))[:500]
    try:
        registry.raise_alert(
            code, f"{action} by {actor} ({scope}): {reason[:1000]}", channel="ops",
            severity=severity, details={"action": action, "actor": actor, "pairs": pairs,
                                        "request_id": request_id},
        )  # fmt: skip
    except Exception as exc:  # the action is done and audited; its alert is the lesser loss
        log.error("alert %s not recorded (%s)", code, type(exc).__name__)


def record(
    registry: Registry, action: str, *, actor: str, role: str, reason: str, request_id: str,
    result: str, before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None,
) -> int:  # fmt: skip
    """One audit row; returns its id. A done ops action (halt, flatten, resume, config
    rollback) also raises its alert, so that it is notified."""
    action_id = registry.record_action(
        action, actor=actor, role=role, reason=reason, request_id=request_id, before=before,
        after=after, result=ActionResult(result), details=details,
    )  # fmt: skip
    if result == ActionResult.OK:
        _notify(registry, action, actor, reason, request_id, details)
    return action_id
