"""/ops/resume: request, approve (the canary step), advance (the rest), and one request's
state; the rules live in :mod:`mlcore.ops._resume`."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path, Request

from mlcore.api._audit import record
from mlcore.api._errors import ApiError
from mlcore.api._guard import GuardedRoute, access, context, principal, request_id
from mlcore.api._routes_ops import (
    ERRORS,
    audited_refusals,
    checked_pairs,
    flags_dict,
    flags_error,
    universe,
)
from mlcore.api._schemas import AdvanceIn, ApproveIn, ResumeIn, ResumeOut
from mlcore.api._users import Duty, Role
from mlcore.errors import RetryableError
from mlcore.ops import ResumeBook, ResumeRecord, ResumeRefused, _flagset
from mlcore.serving import read_flags, update_flags

router = APIRouter(route_class=GuardedRoute, responses=ERRORS)
RESUMERS = {Duty.OPS, Duty.RISK}
RequestId = Path(pattern=r"^[0-9a-f]{32}$", description="the resume request's id")
DD_ACTIONS = ("dd.warn", "dd.halt", "dd.flatten")
HALT_ACTIONS = ("ops.halt", "ops.flatten")


def _book(request: Request) -> ResumeBook:
    ctx = context(request)
    return ResumeBook(ctx.registry.engine, ctx.cfg.runbook.resume_policy)


def _out(book: ResumeBook, rec: ResumeRecord, audit_id: int) -> ResumeOut:
    pairs = rec.body.get("pairs")
    return ResumeOut(
        request_id=rec.request_id,
        request_sha256=rec.request_sha256,
        status=rec.status,  # type: ignore[arg-type]
        requester=rec.requester,
        expires_at=rec.expires_at,
        pairs=sorted(pairs) if pairs is not None else [],
        canary_pairs=rec.canary_pairs,
        rest_pairs=rec.rest_pairs,
        approver=rec.approver,
        watch_until=book.watch_until(rec),
        audit_id=audit_id,
    )


def _step(
    request: Request, action: str, reason: str, pairs: list[str], rec: ResumeRecord
) -> tuple[dict[str, object], dict[str, object], int]:
    """Lift the halts of ``pairs``, audited; ApiError 503 (the caller undoes its claim) when
    the flags cannot be written."""
    ctx, user, rid = context(request), principal(request), request_id(request)
    details = {
        "resume_id": rec.request_id,
        "pairs": pairs,
        "canary": rec.canary_pairs,
        "rest": rec.rest_pairs,
    }
    try:
        before, after = update_flags(
            ctx.flags,
            lambda f: _flagset.release(f, frozenset(pairs), universe(ctx)),
            absent=_flagset.audited(ctx.registry),
        )
    except (RetryableError, ValueError) as exc:
        record(
            ctx.registry,
            action,
            actor=user.name,
            role=user.role.value,
            reason=reason,
            request_id=rid,
            result="failed",
            details={**details, "error": str(exc)[:300]},
        )
        raise flags_error(exc, "the step is not taken") from None
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
    return b, a, audit_id


@router.post("/ops/resume", openapi_extra=access(Role.EDITOR, RESUMERS))
def resume_request(body: ResumeIn, request: Request) -> ResumeOut:
    """Ask to resume the named pairs (or every halted pair); another person of the other duty
    approves the exact request (its ``request_sha256``)."""
    ctx, user = context(request), principal(request)
    book = _book(request)
    with audited_refusals(request, "ops.resume.request", body.reason):
        checked_pairs(ctx, body.pairs)
        rec = book.request(actor=user.name, duty=user.duty.value, body=body.model_dump(mode="json"))
    audit_id = record(
        ctx.registry,
        "ops.resume.request",
        actor=user.name,
        role=user.role.value,
        reason=body.reason,
        request_id=request_id(request),
        result="ok",
        details={
            "resume_id": rec.request_id,
            "request": rec.body,
            "request_sha256": rec.request_sha256,
        },
    )
    return _out(book, rec, audit_id)


@router.get("/ops/resume/{resume_id}", openapi_extra=access(Role.VIEWER))
def resume_show(request: Request, resume_id: str = RequestId) -> ResumeOut:
    """A resume request: its exact request, hash, state and steps."""
    book = _book(request)
    try:
        return _out(book, book.get(resume_id), 0)
    except ResumeRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message, exc.field) from None


@router.post("/ops/resume/{resume_id}/approve", openapi_extra=access(Role.APPROVER, RESUMERS))
def resume_approve(body: ApproveIn, request: Request, resume_id: str = RequestId) -> ResumeOut:
    """Approve a resume request (another person, the other duty, before it expires, bound to
    its hash): the canary share of the halted pairs resumes now."""
    ctx, user = context(request), principal(request)
    book = _book(request)
    with audited_refusals(request, "ops.resume.approve", body.reason):
        try:
            flags = read_flags(ctx.flags)
        except (RetryableError, ValueError) as exc:
            raise flags_error(exc) from None
        asked = book.get(resume_id)
        rec = book.approve(
            resume_id,
            actor=user.name,
            duty=user.duty.value,
            request_sha256=body.request_sha256,
            halted=_flagset.halted(flags, universe(ctx)),
            halts_since=_halts_since(request, asked, "ops.resume.request", asked.body.get("pairs")),
        )
    try:
        _b, _a, audit_id = _step(request, "ops.resume.approve", body.reason, rec.canary_pairs, rec)
    except ApiError:
        book.undo_approval(resume_id, rec.status)
        raise
    return _out(book, rec, audit_id)


def _dd_hits(request: Request, rec: ResumeRecord) -> list[str]:
    """Drawdown events since the approval on a canary pair or the whole book."""
    ctx = context(request)
    since: datetime | None = rec.approved_at
    hits = []
    for action in DD_ACTIONS:
        for row in ctx.registry.actions(action=action, since=since):
            pair = (row.details or {}).get("pair_id")  # the DD guard's crossing; None: the book
            if pair is None or pair in rec.canary_pairs:
                hits.append(f"{action} {pair or 'book'} at {row.occurred_at:%H:%M:%S}")
    return hits


def _halts_since(
    request: Request, rec: ResumeRecord, step: str, covered: list[str] | None
) -> list[str]:
    """Halts and flattens put in force after this resume's ``step`` row (by audit order) on
    the book or a pair of ``covered`` (None: every pair): a new incident, which this resume
    must not lift (it needs a resume of its own, reviewed by two people)."""
    ctx = context(request)
    marks = [
        a.action_id
        for a in ctx.registry.actions(action=step)
        if a.result == "ok" and (a.details or {}).get("resume_id") == rec.request_id
    ]
    if not marks:
        return []
    after, hits = max(marks), []
    for action in HALT_ACTIONS:
        for row in ctx.registry.actions(action=action):
            pairs = (row.details or {}).get("pairs")
            if row.result != "ok" or row.action_id <= after:
                continue
            if pairs is None or covered is None or set(pairs) & set(covered):
                hits.append(f"{action} by {row.actor} at {row.occurred_at:%H:%M:%S}")
    return hits


@router.post("/ops/resume/{resume_id}/advance", openapi_extra=access(Role.APPROVER, RESUMERS))
def resume_advance(body: AdvanceIn, request: Request, resume_id: str = RequestId) -> ResumeOut:
    """Resume the rest after the canary: once the KPI watch ends with no drawdown event on the
    canary pairs, or at once (``early``) as a second approved step by a third person."""
    user = principal(request)
    book = _book(request)
    with audited_refusals(request, "ops.resume.step", body.reason):
        current = book.get(resume_id)
        rec = book.advance(
            resume_id,
            actor=user.name,
            early=body.early,
            dd_hits=_dd_hits(request, current),
            halts_since=_halts_since(request, current, "ops.resume.approve", current.rest_pairs),
        )
    try:
        _b, _a, audit_id = _step(request, "ops.resume.step", body.reason, rec.rest_pairs, rec)
    except ApiError:
        book.undo_advance(resume_id)
        raise
    return _out(book, rec, audit_id)
