"""/ops/rollback: the model version or θ back, by the hot-swap part's functions (which check
first, audit as ``ops.rollback`` and announce the change to the workers)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mlcore.api._errors import ApiError
from mlcore.api._guard import GuardedRoute, access, context, principal, request_id
from mlcore.api._routes_configs import config_call
from mlcore.api._routes_ops import ERRORS
from mlcore.api._schemas import ConfigVersionRollbackIn, ModelRollbackIn, OpsOut, RollbackIn
from mlcore.api._users import Role
from mlcore.errors import MlcoreError, RetryableError
from mlcore.governance import rollback_config
from mlcore.ops import rollback_model, rollback_theta

router = APIRouter(route_class=GuardedRoute, responses=ERRORS)


@router.post("/ops/rollback", openapi_extra=access(Role.APPROVER))
def rollback(body: RollbackIn, request: Request) -> OpsOut:
    """Roll back the model version (to the one deployed before) or θ (to its previous record,
    or a named θ); workers move by hot swap, without a restart."""
    ctx, user, rid = context(request), principal(request), request_id(request)
    who = {"actor": user.name, "role": user.role.value, "reason": body.reason, "request_id": rid}
    if isinstance(body, ConfigVersionRollbackIn):
        return _config_rollback(request, body)
    try:
        if isinstance(body, ModelRollbackIn):
            done = rollback_model(ctx.cfg, to_version=body.to, **who)
        else:
            to = None if body.to is None else (body.to[0], body.to[1])
            done = rollback_theta(ctx.cfg, to=to, **who)
    except RetryableError as exc:
        raise ApiError(503, exc.code, exc.message) from None
    except MlcoreError as exc:  # refused (and recorded as refused): nothing changed
        raise ApiError(
            409,
            exc.code,
            exc.message,
            "body.to" if "TARGET" in exc.code or "THETA" in exc.code else None,
        ) from None
    return OpsOut(
        action="ops.rollback",
        request_id=done.request_id,
        audit_id=done.action_id,
        before=done.before(),
        after=done.after(),
    )


def _config_rollback(request: Request, body: ConfigVersionRollbackIn) -> OpsOut:
    """The governance part's rollback_config, audited as ``ops.rollback`` (kind config)."""
    ctx, user = context(request), principal(request)
    done = config_call(
        request,
        "ops.rollback",
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
    return OpsOut(
        action="ops.rollback",
        request_id=done.request_id,
        audit_id=done.audit_id,
        before=None,
        after=done.result,
    )
