"""/configs/*: governed configuration changes (validate, pr, approve, merge, apply, rollback)
over the governance part's functions; each call also audited as ``configs.<verb>`` with the
request id (the governance part records each transition in ``audit.config_changes``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from fastapi import APIRouter, Request

from mlcore.api._audit import record
from mlcore.api._errors import ApiError
from mlcore.api._guard import GuardedRoute, access, context, principal, request_id
from mlcore.api._routes_ops import ERRORS
from mlcore.api._schemas import (
    ChangeIdIn,
    ConfigApplyIn,
    ConfigFilesIn,
    ConfigOut,
    ConfigPrIn,
    ConfigRollbackIn,
)
from mlcore.api._users import Role
from mlcore.errors import MlcoreError, RetryableError
from mlcore.governance import (
    ChangeRecord,
    ConfigVersion,
    ValidationReport,
    apply,
    approve,
    create_pr,
    merge,
    rollback_config,
    validate_change,
)

router = APIRouter(route_class=GuardedRoute, responses=ERRORS)
T = TypeVar("T")
#: A governance refusal's status: a missing change or SHA is 404, the rest a conflict with
#: the state of the repository or the change (the request itself was well formed).
_NOT_FOUND = ("CONFIG_GOV_CHANGE_NOT_FOUND", "CONFIG_GOV_SHA_UNKNOWN")


def _json(value: ChangeRecord | ConfigVersion | ValidationReport) -> dict[str, Any]:
    if isinstance(value, ChangeRecord):
        return value.details()
    if isinstance(value, ValidationReport):
        return {
            "ok": value.ok,
            "risk": str(value.risk),
            "problems": [asdict(p) for p in value.problems],
            "changes": [
                {"file": c.file, "keys": list(c.keys), "risk": str(c.risk)} for c in value.changes
            ],
        }
    out = asdict(value)
    out["extra"] = dict(value.extra)
    return out


def config_call(request: Request, action: str, reason: str, run: Callable[[], T]) -> ConfigOut:
    """Run a governance verb as ``action``, audited with its result (or refusal)."""
    ctx, user, rid = context(request), principal(request), request_id(request)

    def audit(result: str, details: dict[str, Any]) -> int:
        return record(
            ctx.registry,
            action,
            actor=user.name,
            role=user.role.value,
            reason=reason,
            request_id=rid,
            result=result,
            details=details,
        )

    try:
        done = run()
    except MlcoreError as exc:
        audit(
            "failed" if isinstance(exc, RetryableError) else "refused",
            {"code": exc.code, "message": exc.message[:500]},
        )
        status = (
            503 if isinstance(exc, RetryableError) else (404 if exc.code in _NOT_FOUND else 409)
        )
        raise ApiError(status, exc.code, exc.message) from None
    body = _json(done)  # type: ignore[arg-type]
    audit_id = audit("ok", {"result": body})
    return ConfigOut(action=action, request_id=rid, audit_id=audit_id, result=body)


def _files(body: ConfigFilesIn) -> dict[str, bytes]:
    return {name: text.encode() for name, text in body.files.items()}


@router.post("/configs/validate", openapi_extra=access(Role.EDITOR))
def configs_validate(body: ConfigFilesIn, request: Request) -> ConfigOut:
    """Validate proposed policy files over main: schema, cross-file consistency, risk."""
    cfg = context(request).cfg
    return config_call(
        request, "configs.validate", "validate", lambda: validate_change(cfg, _files(body))
    )


@router.post("/configs/pr", openapi_extra=access(Role.EDITOR))
def configs_pr(body: ConfigPrIn, request: Request) -> ConfigOut:
    """Propose a change: a branch and a change record (refused when it does not validate)."""
    ctx, user = context(request), principal(request)
    return config_call(
        request,
        "configs.pr",
        body.reason,
        lambda: create_pr(
            ctx.cfg,
            _files(body),
            actor=user.name,
            role=user.role.value,
            reason=body.reason,
            registry=ctx.registry,
        ),
    )


@router.post("/configs/approve", openapi_extra=access(Role.APPROVER))
def configs_approve(body: ChangeIdIn, request: Request) -> ConfigOut:
    """Approve a change (not its author; a high-risk change needs two approvers)."""
    ctx, user = context(request), principal(request)
    return config_call(
        request,
        "configs.approve",
        body.reason,
        lambda: approve(
            ctx.cfg,
            body.change_id,
            actor=user.name,
            role=user.role.value,
            registry=ctx.registry,
            reason=body.reason,
        ),
    )


@router.post("/configs/merge", openapi_extra=access(Role.APPROVER))
def configs_merge(body: ChangeIdIn, request: Request) -> ConfigOut:
    """Merge an approved change onto main."""
    ctx, user = context(request), principal(request)
    return config_call(
        request,
        "configs.merge",
        body.reason,
        lambda: merge(
            ctx.cfg, body.change_id, actor=user.name, role=user.role.value, registry=ctx.registry
        ),
    )


@router.post("/configs/apply", openapi_extra=access(Role.APPROVER))
def configs_apply(body: ConfigApplyIn, request: Request) -> ConfigOut:
    """Put a merged change (or a commit of main) in force."""
    ctx, user = context(request), principal(request)
    return config_call(
        request,
        "configs.apply",
        body.reason,
        lambda: apply(
            ctx.cfg,
            body.change_id,
            sha=body.sha,
            actor=user.name,
            role=user.role.value,
            registry=ctx.registry,
        ),
    )


@router.post("/configs/rollback", openapi_extra=access(Role.APPROVER))
def configs_rollback(body: ConfigRollbackIn, request: Request) -> ConfigOut:
    """Back to the previously applied config version (or ``to``, a SHA applied before)."""
    ctx, user = context(request), principal(request)
    return config_call(
        request,
        "configs.rollback",
        body.reason,
        lambda: rollback_config(
            ctx.cfg,
            actor=user.name,
            role=user.role.value,
            reason=body.reason,
            registry=ctx.registry,
            to=body.to,
        ),
    )
