"""The notification outbox (``audit.notifications``): claim the next due row of a destination,
then record what its delivery came to.

Rows of one destination go out in order (created_at, id): a notifier claims only the head of
its destination's queue, and only when no older row is pending or in flight. PostgreSQL: the
head is locked ``FOR UPDATE SKIP LOCKED`` (a row another notifier holds is skipped, and the
older-row check then sends this one away); SQLite: ``BEGIN IMMEDIATE`` makes the claim a single
writer. A claim is a lease (``claimed_until``): a notifier that dies mid-send leaves its row to
be taken again once the lease ends (PagerDuty's dedup key absorbs the repeat)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update

from mlcore.observability._templates import AlertView
from mlcore.registry._alerts import NotifyStatus, NotifyTarget, alert_scope
from mlcore.registry._common import aware, maybe_aware
from mlcore.registry._tables import alerts, notifications

_OPEN = (NotifyStatus.PENDING.value, NotifyStatus.SENDING.value)


@dataclass(frozen=True)
class Claim:
    """One notification claimed for sending, with its alert."""

    notification_id: str
    target: NotifyTarget
    dedup_key: str
    attempts: int
    token: str
    alert: AlertView


@dataclass(frozen=True)
class OutboxRow:
    """A notification as ``mlcore notify status`` lists it."""

    notification_id: str
    alert_id: str
    code: str
    severity: str
    target: str
    channel: str | None
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None


def _older_open(target: str, created_at: datetime, nid: str) -> Any:
    n = notifications.c
    return select(n.notification_id).where(
        n.target == target, n.status.in_(_OPEN),
        or_(n.created_at < created_at, and_(n.created_at == created_at, n.notification_id < nid)),
    ).limit(1)  # fmt: skip


def claim_next(engine: Engine, target: NotifyTarget, now: datetime, lease_s: float) -> Claim | None:
    """Claim the head of ``target``'s queue if it is due and nobody holds it; else None."""
    n = notifications.c
    head = (
        select(notifications).where(n.target == target.value, n.status.in_(_OPEN))
        .order_by(n.created_at, n.notification_id).limit(1)
    )  # fmt: skip
    if engine.dialect.name == "postgresql":
        head = head.with_for_update(skip_locked=True)
    token = str(uuid.uuid4())
    with engine.begin() as conn:
        row = conn.execute(head).first()
        if row is None:
            return None
        m = row._mapping
        created = m["created_at"]
        if conn.execute(_older_open(target.value, created, m["notification_id"])).first():
            return None  # an older row is held by another notifier: order first
        lease_end = maybe_aware(m["claimed_until"])
        if m["status"] == NotifyStatus.SENDING.value and lease_end is not None and lease_end > now:
            return None  # in flight elsewhere
        if aware(m["next_attempt_at"]) > now:
            return None  # the head waits out its backoff; the rows behind it wait too
        a = conn.execute(select(alerts).where(alerts.c.alert_id == m["alert_id"])).first()
        if a is None:  # the alert row is gone (pruned by hand): nothing left to say
            conn.execute(update(notifications).where(n.notification_id == m["notification_id"])
                         .values(status=NotifyStatus.FAILED.value,
                                 last_error="its alert row no longer exists"))  # fmt: skip
            return None
        conn.execute(
            update(notifications).where(n.notification_id == m["notification_id"]).values(
                status=NotifyStatus.SENDING.value, claimed_by=token,
                claimed_until=now + timedelta(seconds=lease_s),
            )
        )  # fmt: skip
    am = a._mapping
    view = AlertView(
        alert_id=am["alert_id"], code=am["code"], severity=am["severity"], source=am["channel"],
        message=am["message"], run_id=am["run_id"], raised_at=aware(am["raised_at"]),
        details=am["details"], scope=alert_scope(am["run_id"], am["details"]),
    )  # fmt: skip
    return Claim(m["notification_id"], target, m["dedup_key"], m["attempts"], token, view)


def _finish(engine: Engine, claim: Claim, **values: Any) -> bool:
    """Write ``values`` if the claim still holds (False: its lease was taken over)."""
    n = notifications.c
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(notifications)
                .where(n.notification_id == claim.notification_id, n.claimed_by == claim.token)
                .values(claimed_by=None, claimed_until=None, attempts=claim.attempts + 1, **values)
            ).rowcount
        )


def mark_delivered(
    engine: Engine, claim: Claim, now: datetime, channel: str | None, payload: dict[str, Any]
) -> bool:
    """The receiver took it."""
    return _finish(engine, claim, status=NotifyStatus.DELIVERED.value, delivered_at=now,
                   channel=channel, payload=payload, last_error=None)  # fmt: skip


def mark_failed(
    engine: Engine, claim: Claim, reason: str, channel: str | None, payload: dict[str, Any]
) -> bool:
    """The receiver refused it for good (a 4xx): a person must look."""
    return _finish(engine, claim, status=NotifyStatus.FAILED.value, last_error=reason[:2000],
                   channel=channel, payload=payload)  # fmt: skip


def mark_retry(engine: Engine, claim: Claim, reason: str, next_at: datetime) -> bool:
    """Not delivered this time: pending again from ``next_at``."""
    return _finish(engine, claim, status=NotifyStatus.PENDING.value, last_error=reason[:2000],
                   next_attempt_at=next_at)  # fmt: skip


def counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Rows per (target, status)."""
    n = notifications.c
    q = select(n.target, n.status, func.count()).group_by(n.target, n.status)
    with engine.connect() as conn:
        return {(t, s): int(c) for t, s, c in conn.execute(q)}


def listing(engine: Engine, statuses: tuple[str, ...], limit: int) -> list[OutboxRow]:
    """Rows in ``statuses``, oldest first, with their alert's code and severity."""
    n, a = notifications.c, alerts.c
    q = (
        select(notifications, a.code, a.severity)
        .join(alerts, a.alert_id == n.alert_id)
        .where(n.status.in_(statuses))
        .order_by(n.created_at, n.notification_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            OutboxRow(
                m["notification_id"],
                m["alert_id"],
                m["code"],
                m["severity"],
                m["target"],
                m["channel"],
                m["status"],
                m["attempts"],
                aware(m["created_at"]),
                aware(m["next_attempt_at"]),
                maybe_aware(m["delivered_at"]),
                m["last_error"],
            )
            for m in (r._mapping for r in conn.execute(q))
        ]
