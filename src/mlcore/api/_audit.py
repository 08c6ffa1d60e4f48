"""Recording what the API did and refused, through the registry's audit trail
(``Registry.record_action``, ``audit.analytics_actions``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mlcore.registry import ActionResult, Registry

log = logging.getLogger("mlcore.api")


def record(
    registry: Registry, action: str, *, actor: str, role: str, reason: str, request_id: str,
    result: str, before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None,
) -> int:  # fmt: skip
    """One audit row; returns its id."""
    return registry.record_action(
        action, actor=actor, role=role, reason=reason, request_id=request_id, before=before,
        after=after, result=ActionResult(result), details=details,
    )  # fmt: skip
