"""Alerts (``audit.alerts``): what the flows and serving raised, for people and dashboards."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, insert, select

from mlcore.errors import Severity
from mlcore.registry._common import aware, now
from mlcore.registry._records import Alert
from mlcore.registry._tables import alerts


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
        """Record an alert; returns its id. ``ValueError`` for an unknown severity."""
        level = Severity(severity)
        alert_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(insert(alerts).values(
                alert_id=alert_id, raised_at=now(), code=code, severity=level.value,
                channel=channel, message=message, run_id=run_id, details=details,
            ))  # fmt: skip
        return alert_id

    def recent(self, code: str | None = None, limit: int | None = None) -> list[Alert]:
        """Recorded alerts (or those of one code), newest first (the newest ``limit``)."""
        query = select(alerts).order_by(alerts.c.raised_at.desc()).limit(limit)
        if code is not None:
            query = query.where(alerts.c.code == code)
        with self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(query)]
