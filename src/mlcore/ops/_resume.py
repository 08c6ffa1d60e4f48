"""The two-person resume (runbook_policy.yaml ``resume_policy``): one person requests, another
of the other duty approves the exact request (its sha256) before it expires; the approval
lifts the halts of a canary share of the halted pairs, the rest follow after the KPI watch
(no drawdown warning or halt on the canary pairs) or at once on a second approved step.

Requests live in ``core.resume_requests``; each step is claimed atomically (a conditional
UPDATE), so an approval or a step cannot be used twice. No web framework here."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from mlcore.config import ResumePolicy
from mlcore.errors import FatalError
from mlcore.registry._tables import resume_requests


class ResumeRefused(FatalError):
    """A resume step refused: ``status`` (HTTP), the code, the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(code, message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class ResumeRecord:
    """A resume request and where it stands."""

    request_id: str
    created_at: datetime
    expires_at: datetime
    requester: str
    requester_duty: str
    body: dict[str, Any]
    request_sha256: str
    status: str  # requested, canary, done, expired
    approver: str | None
    approved_at: datetime | None
    canary_pairs: list[str]
    rest_pairs: list[str]
    advanced_by: str | None


def canonical_sha256(body: Mapping[str, Any]) -> str:
    """The sha256 of the canonical JSON of ``body`` (keys sorted, no spaces, UTF-8)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def canary_split(pairs: frozenset[str], fraction: float) -> tuple[list[str], list[str]]:
    """(canary, rest): ceil(fraction × n) of the pairs, in name order, first."""
    ordered = sorted(pairs)
    n = math.ceil(fraction * len(ordered) - 1e-9)
    return ordered[:n], ordered[n:]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _record(row: Any) -> ResumeRecord:
    m = row._mapping
    return ResumeRecord(
        request_id=m["request_id"],
        created_at=_aware(m["created_at"]),
        expires_at=_aware(m["expires_at"]),
        requester=m["requester"],
        requester_duty=m["requester_duty"],
        body=dict(m["body"]),
        request_sha256=m["request_sha256"],
        status=m["status"],
        approver=m["approver"],
        approved_at=None if m["approved_at"] is None else _aware(m["approved_at"]),
        canary_pairs=list(m["canary_pairs"] or []),
        rest_pairs=list(m["rest_pairs"] or []),
        advanced_by=m["advanced_by"],
    )


class ResumeBook:
    """Resume requests on ``engine`` under ``policy``."""

    def __init__(self, engine: Engine, policy: ResumePolicy) -> None:
        self.engine = engine
        self.policy = policy

    def request(
        self, *, actor: str, duty: str, body: Mapping[str, Any], now: datetime | None = None
    ) -> ResumeRecord:
        """Record a request by ``actor`` of ``duty`` (one of the required duties)."""
        if duty not in self.policy.required_duties:
            raise ResumeRefused(
                403,
                "OPS_RESUME_DUTY_MISSING",
                f"{actor} has duty {duty}; a "
                f"resume is requested by {' or '.join(self.policy.required_duties)}",
            )
        now = now or datetime.now(UTC)
        rid = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                insert(resume_requests).values(
                    request_id=rid,
                    created_at=now,
                    expires_at=now + timedelta(minutes=self.policy.approval_ttl_minutes),
                    requester=actor,
                    requester_duty=duty,
                    body=dict(body),
                    request_sha256=canonical_sha256(body),
                    status="requested",
                )
            )
        return self.get(rid)

    def get(self, request_id: str) -> ResumeRecord:
        """One request; ``OPS_RESUME_NOT_FOUND`` (404) if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(resume_requests).where(resume_requests.c.request_id == request_id)
            ).first()
        if row is None:
            raise ResumeRefused(
                404, "OPS_RESUME_NOT_FOUND", f"no resume request {request_id[:40]!r}", "request_id"
            )
        return _record(row)

    def check_approval(
        self, rec: ResumeRecord, *, actor: str, duty: str, request_sha256: str, now: datetime
    ) -> None:
        """Refuse an approval that breaks a rule (each with its own code)."""
        if rec.status != "requested":
            raise ResumeRefused(
                409,
                "OPS_RESUME_ALREADY_APPROVED",
                f"resume {rec.request_id} is {rec.status}: an approval is used "
                "once; request a new resume",
                "request_id",
            )
        if now >= rec.expires_at:
            raise ResumeRefused(
                409,
                "OPS_RESUME_EXPIRED",
                f"resume {rec.request_id} expired at {rec.expires_at:%H:%M:%S} "
                f"UTC ({self.policy.approval_ttl_minutes} min); request it again",
                "request_id",
            )
        if actor == rec.requester:
            raise ResumeRefused(
                403,
                "OPS_RESUME_SELF_APPROVAL",
                f"{actor} requested resume {rec.request_id}; another person must approve it",
            )
        if duty not in self.policy.required_duties or duty == rec.requester_duty:
            other = [d for d in self.policy.required_duties if d != rec.requester_duty]
            raise ResumeRefused(
                403,
                "OPS_RESUME_SAME_DUTY",
                f"{rec.requester} ({rec.requester_duty}) requested it; the "
                f"approver must have duty {' or '.join(other)}, {actor} has "
                f"{duty}",
            )
        if canonical_sha256(rec.body) != rec.request_sha256:
            raise ResumeRefused(
                409,
                "OPS_RESUME_REQUEST_CHANGED",
                f"resume {rec.request_id}'s stored request no longer matches its hash; refused",
                "request_id",
            )
        if request_sha256 != rec.request_sha256:
            raise ResumeRefused(
                409,
                "OPS_RESUME_REQUEST_CHANGED",
                f"request_sha256 {request_sha256[:12]}... is not that of resume "
                f"{rec.request_id} ({rec.request_sha256[:12]}...): the request "
                "differs from the one reviewed",
                "body.request_sha256",
            )

    def approve(
        self,
        request_id: str,
        *,
        actor: str,
        duty: str,
        request_sha256: str,
        halted: frozenset[str],
        halts_since: list[str] | None = None,
        now: datetime | None = None,
    ) -> ResumeRecord:
        """Approve and take the canary step: returns the record with its canary and rest
        pairs (the caller lifts the canary's halts). ``halts_since``: the halts and flattens
        of the request's pairs audited since it was made (a new incident: refused)."""
        now = now or datetime.now(UTC)
        rec = self.get(request_id)
        if rec.status == "requested" and now >= rec.expires_at:
            self._set(request_id, "requested", status="expired")
        self.check_approval(rec, actor=actor, duty=duty, request_sha256=request_sha256, now=now)
        if halts_since:
            raise ResumeRefused(
                409,
                "OPS_RESUME_HALTED_AGAIN",
                f"halted again since resume {request_id} was requested: "
                f"{', '.join(halts_since[:5])}; request a new resume",
                "request_id",
            )
        asked = rec.body.get("pairs")
        targets = halted if asked is None else halted & frozenset(asked)
        if not targets:
            raise ResumeRefused(
                409,
                "OPS_RESUME_NOTHING_HALTED",
                "none of the requested pairs is halted now; nothing to resume",
                "request_id",
            )
        canary, rest = canary_split(targets, self.policy.canary_fraction)
        status = "canary" if rest else "done"
        if not self._set(
            request_id,
            "requested",
            status=status,
            approver=actor,
            approved_at=now,
            canary_pairs=canary,
            rest_pairs=rest,
        ):
            raise ResumeRefused(
                409,
                "OPS_RESUME_ALREADY_APPROVED",
                f"resume {request_id} was approved meanwhile",
                "request_id",
            )
        return self.get(request_id)

    def undo_approval(self, request_id: str, status: str) -> None:
        """Put a request back to ``requested`` when its canary step could not be applied."""
        self._set(
            request_id,
            status,
            status="requested",
            approver=None,
            approved_at=None,
            canary_pairs=None,
            rest_pairs=None,
        )

    def watch_until(self, rec: ResumeRecord) -> datetime | None:
        """When the KPI watch of the canary ends."""
        if rec.approved_at is None:
            return None
        return rec.approved_at + timedelta(minutes=self.policy.kpi_watch_minutes)

    def advance(
        self,
        request_id: str,
        *,
        actor: str,
        early: bool,
        dd_hits: list[str],
        halts_since: list[str] | None = None,
        now: datetime | None = None,
    ) -> ResumeRecord:
        """Take the rest step: after the KPI watch with no drawdown event on the canary pairs
        (``dd_hits``: those seen since the approval), or ``early`` as a second approved step by
        a person who neither requested nor approved the resume. ``halts_since``: the halts and
        flattens audited since the approval (a new incident: its halts need a new resume)."""
        now = now or datetime.now(UTC)
        rec = self.get(request_id)
        if rec.status != "canary":
            raise ResumeRefused(
                409,
                "OPS_RESUME_NOT_IN_CANARY",
                f"resume {request_id} is {rec.status}, not in its canary step",
                "request_id",
            )
        if dd_hits:
            raise ResumeRefused(
                409,
                "OPS_RESUME_CANARY_DRAWDOWN",
                f"drawdown events on the canary since the approval: "
                f"{', '.join(dd_hits[:5])}; the rest stays halted",
            )
        if halts_since:
            raise ResumeRefused(
                409,
                "OPS_RESUME_HALTED_AGAIN",
                f"halted again since resume {request_id} was approved: "
                f"{', '.join(halts_since[:5])}; request a new resume",
                "request_id",
            )
        until = self.watch_until(rec)
        if early:
            if actor in (rec.requester, rec.approver):
                raise ResumeRefused(
                    403,
                    "OPS_RESUME_SELF_APPROVAL",
                    f"{actor} requested or approved resume {request_id}; a "
                    "second approved step needs a third person",
                    "body.early",
                )
        elif until is not None and now < until:
            raise ResumeRefused(
                409,
                "OPS_RESUME_WATCH_PENDING",
                f"the KPI watch of resume {request_id} ends at {until:%H:%M:%S} "
                "UTC; wait, or send early=true as a second approved step",
            )
        if not self._set(request_id, "canary", status="done", advanced_by=actor, advanced_at=now):
            raise ResumeRefused(
                409,
                "OPS_RESUME_NOT_IN_CANARY",
                f"resume {request_id} advanced meanwhile",
                "request_id",
            )
        return self.get(request_id)

    def undo_advance(self, request_id: str) -> None:
        """Put a request back in its canary step when the rest could not be applied."""
        self._set(request_id, "done", status="canary", advanced_by=None, advanced_at=None)

    def _set(self, request_id: str, expected: str, **values: Any) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(resume_requests)
                .where(
                    resume_requests.c.request_id == request_id, resume_requests.c.status == expected
                )
                .values(**values)
            ).rowcount
        return bool(done)
