"""/health, /ops/flags, /ops/halt, /ops/flatten: thin handlers over the flags and the audit
trail (resume in ``_routes_resume``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request

from mlcore import __version__
from mlcore.api._audit import record
from mlcore.api._errors import ApiError
from mlcore.api._guard import ApiContext, GuardedRoute, access, context, principal, request_id
from mlcore.api._schemas import ErrorOut, FlagsOut, FlattenIn, HaltIn, HealthOut, OpsOut
from mlcore.api._users import Duty, Role
from mlcore.errors import RetryableError
from mlcore.ops import HaltLevel, ResumeRefused, _flagset
from mlcore.serving import OpsFlags, flags_json, read_flags, update_flags

#: The refusals every route may answer (documented in the OpenAPI document).
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (400, 401, 403, 404, 408, 409, 413, 415, 422, 503)
}

router = APIRouter(route_class=GuardedRoute, responses=ERRORS)


def flags_dict(flags: OpsFlags) -> dict[str, Any]:
    """The flags document as a dict (as the audit trail keeps it)."""
    doc: dict[str, Any] = json.loads(flags_json(flags))
    return doc


def checked_pairs(ctx: ApiContext, pairs: list[str] | None) -> frozenset[str] | None:
    """``pairs`` if each is a pair of universe.yaml (None stays None: the whole book)."""
    if pairs is None:
        return None
    known = {p.pair_id for p in ctx.cfg.universe.pairs}
    for i, pair in enumerate(pairs):
        if pair not in known:
            raise ApiError(
                404,  # a schema-valid name the universe does not hold: not found
                "OPS_PAIR_UNKNOWN",
                f"pair {pair!r} is not in universe.yaml ({', '.join(sorted(known))})",
                f"body.pairs[{i}]",
            )
    return frozenset(pairs)


def universe(ctx: ApiContext) -> list[str]:
    """Every pair id of the universe."""
    return [p.pair_id for p in ctx.cfg.universe.pairs]


def flags_error(exc: Exception, done: str = "") -> ApiError:
    """The refusal for a flags store that does not answer (503) or holds a document it refuses
    (409: a person must look at it; it is not overwritten)."""
    tail = f"; {done}" if done else ""
    if isinstance(exc, RetryableError):
        return ApiError(503, "OPS_FLAGS_UNAVAILABLE", f"{exc.message[:300]}{tail}, try again")
    return ApiError(409, "OPS_FLAGS_UNREADABLE", f"{str(exc)[:300]}{tail}")


@contextmanager
def audited_refusals(request: Request, action: str, reason: str) -> Iterator[None]:
    """A refusal of an authorised call (a bad pair, a resume rule) is audited as ``refused``
    and answered as its ApiError."""
    try:
        yield
    except (ApiError, ResumeRefused) as exc:
        error = (
            exc
            if isinstance(exc, ApiError)
            else ApiError(exc.status, exc.code, exc.message, exc.field)
        )
        ctx, user = context(request), principal(request)
        record(
            ctx.registry,
            action,
            actor=user.name,
            role=user.role.value,
            reason=reason,
            request_id=request_id(request),
            result="refused",
            details={"code": error.code, "message": error.message},
        )
        raise error from None


def flag_action(
    request: Request,
    action: str,
    reason: str,
    change: Callable[[OpsFlags], OpsFlags],
    details: dict[str, Any] | None = None,
) -> OpsOut:
    """Apply ``change`` to the flags and audit it with the flags before and after."""
    ctx, user, rid = context(request), principal(request), request_id(request)
    try:
        before, after = update_flags(ctx.flags, change, absent=_flagset.audited(ctx.registry))
    except (RetryableError, ValueError) as exc:
        failed = {**(details or {}), "error": str(exc)[:300]}
        record(ctx.registry, action, actor=user.name, role=user.role.value, reason=reason,
               request_id=rid, result="failed", details=failed)  # fmt: skip
        raise flags_error(exc, "nothing changed") from None
    b, a = flags_dict(before), flags_dict(after)
    audit_id = record(
        ctx.registry,
        action,
        actor=user.name,
        role=user.role.value,
        reason=reason,
        request_id=rid,
        before=b,
        after=a,
        result="ok",
        details=details,
    )
    return OpsOut(action=action, request_id=rid, audit_id=audit_id, before=b, after=a)


@router.get("/health", openapi_extra=access(None))
def health() -> HealthOut:
    """The server answers (no authentication)."""
    return HealthOut(status="ok", version=__version__)


@router.get("/ops/flags", openapi_extra=access(Role.VIEWER))
def get_flags(request: Request) -> FlagsOut:
    """The ops flags document in force."""
    try:
        flags = read_flags(context(request).flags)
    except (RetryableError, ValueError) as exc:
        raise flags_error(exc) from None
    return FlagsOut(flags=flags_dict(flags))


@router.post("/ops/halt", openapi_extra=access(Role.EDITOR, {Duty.OPS}))
def halt(body: HaltIn, request: Request) -> OpsOut:
    """Halt the named pairs (or the whole book): soft (no new entries) or hard (no signals)."""
    with audited_refusals(request, "ops.halt", body.reason):
        pairs = checked_pairs(context(request), body.pairs)
    return flag_action(
        request,
        "ops.halt",
        body.reason,
        lambda f: _flagset.halt(f, HaltLevel(body.level), pairs),
        {"level": body.level, "pairs": body.pairs},
    )


@router.post("/ops/flatten", openapi_extra=access(Role.EDITOR, {Duty.OPS}))
def flatten(body: FlattenIn, request: Request) -> OpsOut:
    """Latch a flatten of the named pairs (or the whole book)."""
    ctx = context(request)
    with audited_refusals(request, "ops.flatten", body.reason):
        pairs = checked_pairs(ctx, body.pairs)
    return flag_action(
        request,
        "ops.flatten",
        body.reason,
        lambda f: _flagset.flatten(f, pairs),
        {"pairs": body.pairs},
    )
