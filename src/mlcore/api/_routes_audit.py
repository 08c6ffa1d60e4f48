"""/audit/verify and /audit/at: the audit part's chain check and what was in force at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator

from mlcore.api._errors import ApiError
from mlcore.api._guard import GuardedRoute, access, context
from mlcore.api._routes_ops import ERRORS
from mlcore.api._schemas import AuditAtOut, AuditVerifyOut
from mlcore.api._users import Role

router = APIRouter(route_class=GuardedRoute, responses=ERRORS)
Head = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]


def _not_a_number(value: object) -> object:
    """A time is ISO 8601 text; pydantic would also take ``0.5`` as seconds since 1970."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("a time in ISO 8601 with its zone, not a number")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_not_a_number)]


@router.get("/audit/verify", openapi_extra=access(Role.VIEWER))
def audit_verify(
    request: Request,
    head: Annotated[
        list[Head] | None,
        Query(
            max_length=20,
            description="row hashes recorded earlier, which must still be in the chain",
        ),
    ] = None,
) -> AuditVerifyOut:
    """Check both audit chains row by row: ``intact`` false names each broken row."""
    report = context(request).registry.verify_audit(head or [])
    return AuditVerifyOut.model_validate(report.as_json(), strict=False)


@router.get("/audit/at", openapi_extra=access(Role.VIEWER))
def audit_at(
    request: Request,
    ts: Annotated[
        IsoTime, Query(description="ISO 8601 time with its zone, e.g. 2026-12-06T18:00:00Z")
    ],
) -> AuditAtOut:
    """What was in force at ``ts``: model version, θ, config version, flags, and who changed
    each last."""
    if ts.tzinfo is None:
        raise ApiError(422, "API_REQUEST_INVALID", "ts: give the time zone (e.g. Z)", "query.ts")
    state = context(request).registry.state_at(ts.astimezone(UTC))
    return AuditAtOut.model_validate(state.as_json(), strict=False)
