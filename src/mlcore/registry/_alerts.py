"""Alerts (``audit.alerts``): what the flows and serving raised, for people and dashboards."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from mlcore.errors import Severity
from mlcore.registry._common import aware, now
from mlcore.registry._records import Alert
from mlcore.registry._tables import alerts, notifications


class NotifyTarget(StrEnum):
    """Where an alert is delivered (the notification outbox's ``target``)."""

    SLACK = "slack"
    PAGERDUTY = "pagerduty"


class NotifyStatus(StrEnum):
    """A notification's state: pending (due at next_attempt_at), sending (claimed, leased),
    delivered, failed (refused by the receiver: a person must look)."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


#: Spec (002 通知): every alert goes to Slack; critical ones also page PagerDuty.
PAGED = frozenset({Severity.CRITICAL})
#: The ``details`` keys naming an alert's scope, in order of preference.
SCOPE_KEYS = ("pair_id", "pair", "model_version", "version", "worker", "request_id")
_DEDUP_MAX = 128


def alert_scope(run_id: str | None, details: dict[str, Any] | None) -> str:
    """What the alert is about: its run, else its pair, version or worker, else ``global``."""
    if run_id:
        return f"run:{run_id}"
    for key in SCOPE_KEYS:
        value = (details or {}).get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return f"{key}:{value}"
    return "global"


def dedup_key(code: str, scope: str) -> str:
    """``code/scope``: a repeated alert of one incident is one PagerDuty incident. Longer
    than the column: its head and a hash of the whole."""
    key = f"{code}/{scope}"
    if len(key) <= _DEDUP_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]
    return f"{key[: _DEDUP_MAX - 33]}#{digest}"


def enqueue(
    conn: Connection, alert_id: str, code: str, level: Severity, scope: str, at: datetime
) -> list[str]:
    """One pending outbox row per destination of the alert, in the caller's transaction."""
    targets = [NotifyTarget.SLACK, *([NotifyTarget.PAGERDUTY] if level in PAGED else [])]
    ids = []
    for target in targets:
        nid = str(uuid.uuid4())
        conn.execute(insert(notifications).values(
            notification_id=nid, alert_id=alert_id, target=target.value, channel=None,
            dedup_key=dedup_key(code, scope), created_at=at, status=NotifyStatus.PENDING.value,
            attempts=0, next_attempt_at=at,
        ))  # fmt: skip
        ids.append(nid)
    return ids


def _alert(row: Any) -> Alert:
    m = row._mapping
    return Alert(
        alert_id=m["alert_id"], raised_at=aware(m["raised_at"]), code=m["code"],
        severity=Severity(m["severity"]), channel=m["channel"], message=m["message"],
        run_id=m["run_id"], details=m["details"],
    )  # fmt: skip


class Alerts:
    """The alerts recorded on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def raise_alert(
        self, code: str, message: str, *, channel: str, severity: str = Severity.ERROR,
        run_id: str | None = None, details: dict[str, Any] | None = None,
    ) -> str:  # fmt: skip
        """Record an alert and, in the same transaction, its notifications (Slack; PagerDuty
        too when critical): a recorded alert is never left undelivered. Returns its id.
        ``ValueError`` for an unknown severity."""
        level = Severity(severity)
        alert_id = str(uuid.uuid4())
        at = now()
        with self.engine.begin() as conn:
            conn.execute(insert(alerts).values(
                alert_id=alert_id, raised_at=at, code=code, severity=level.value,
                channel=channel, message=message, run_id=run_id, details=details,
            ))  # fmt: skip
            enqueue(conn, alert_id, code, level, alert_scope(run_id, details), at)
        return alert_id

    def recent(self, code: str | None = None, limit: int | None = None) -> list[Alert]:
        """Recorded alerts (or those of one code), newest first (the newest ``limit``)."""
        query = select(alerts).order_by(alerts.c.raised_at.desc()).limit(limit)
        if code is not None:
            query = query.where(alerts.c.code == code)
        with self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(query)]
