"""The audit trail: actions (``audit.analytics_actions``: who did what through the Ops API,
the drawdown guard, the config workflow) and configuration events (``audit.config_changes``),
both append-only and hash-chained (see ``_chain``); verifying the chains; reading the rows
that say what was in force at a time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Engine, select

from mlcore.registry._chain import ACTION_CHAIN, CHAINS, CONFIG_CHAIN, Break, read_chain
from mlcore.registry._common import aware, chained, need_notes
from mlcore.registry._errors import RegistryError
from mlcore.registry._records import ActionRecord, ActionResult, AuditEvent, StatusChange
from mlcore.registry._state_at import StateAt, state_at
from mlcore.registry._tables import analytics_actions, config_changes

#: The longest ``action`` name (its column's width).
ACTION_MAX: Final = 64
#: The widest status a config_changes row holds (its columns' width).
STATUS_MAX: Final = 16
#: The longest name (actor, role, request id) and reason an audit row takes.
NAME_MAX: Final = 200
REASON_MAX: Final = 10_000


def _refused(message: str) -> RegistryError:
    return RegistryError("AUDIT_REQUEST_VALUE_INVALID", f"not recorded: {message}")


def _text(name: str, value: Any, limit: int | None = None) -> str:
    """A required one-line text field."""
    if not isinstance(value, str) or not value.strip():
        raise _refused(f"{name} must be non-empty text, got {value!r:.60}")
    if limit is not None and len(value) > limit:
        raise _refused(f"{name} {value[:40]!r}... is longer than {limit} characters")
    return value


def _document(name: str, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _refused(f"{name} must be a JSON object (a mapping), got {type(value).__name__}")
    return dict(value)


def action_record(row: Any) -> ActionRecord:
    """An ``audit.analytics_actions`` row as a record."""
    m = row._mapping
    return ActionRecord(
        action_id=int(m["action_id"]), occurred_at=aware(m["occurred_at"]), actor=m["actor"],
        role=m["role"], action=m["action"], request_id=m["request_id"], reason=m["reason"],
        before=m["before"], after=m["after"], result=ActionResult(m["result"]),
        details=m["details"], prev_hash=m["prev_hash"], row_hash=m["row_hash"],
    )  # fmt: skip


@dataclass(frozen=True)
class ChainReport:
    """What verifying the audit chains found: rows per table, each broken row, each table's
    newest row (id, hash: keep it elsewhere to prove later that no row after it was removed),
    and the recorded heads asked for that the chains no longer hold."""

    rows: dict[str, int]
    breaks: list[Break]
    heads: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    heads_missing: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """True when no row is broken."""
        return not self.breaks and not self.heads_missing

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (for the API)."""
        return {
            "intact": self.intact, "rows": dict(self.rows),
            "heads": {t: {"row_id": i, "row_hash": h} for t, (i, h) in self.heads.items()},
            "heads_missing": list(self.heads_missing),
            "breaks": [{"table": b.table, "row_id": b.row_id, "problem": b.problem,
                        "line": str(b)} for b in self.breaks],
        }  # fmt: skip


class AuditTrail:
    """The hash-chained audit tables on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_action(
        self, action: str, *, actor: str, role: str, reason: str, request_id: str,
        before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
        result: ActionResult, details: Mapping[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """Append one row to ``audit.analytics_actions``; its ``action_id``.
        ``RegistryError`` ``AUDIT_REQUEST_VALUE_INVALID`` naming the field for a value that
        cannot be recorded (nothing written)."""
        try:
            outcome = ActionResult(result)
        except ValueError:
            raise _refused(
                f"result {result!r} is not one of {[str(r) for r in ActionResult]}"
            ) from None
        values = {
            "action": _text("action", action, ACTION_MAX),
            "actor": _text("actor", actor, NAME_MAX), "role": _text("role", role, NAME_MAX),
            "reason": _text("reason", reason, REASON_MAX),
            "request_id": _text("request_id", request_id, NAME_MAX), "result": outcome.value,
            "before": _document("before", before), "after": _document("after", after),
            "details": _document("details", details),
        }  # fmt: skip
        with self.engine.begin() as conn:
            return chained(conn, ACTION_CHAIN, values)

    def actions(
        self, *, action: str | None = None, since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[ActionRecord]:  # fmt: skip
        """``audit.analytics_actions`` rows (of one action; at or after ``since``; at or
        before ``until``), oldest first."""
        t = analytics_actions
        query = select(t).order_by(t.c.action_id)
        if action is not None:
            query = query.where(t.c.action == action)
        if since is not None:
            query = query.where(t.c.occurred_at >= _utc(since))
        if until is not None:
            query = query.where(t.c.occurred_at <= _utc(until))
        with self.engine.connect() as conn:
            return [action_record(r) for r in conn.execute(query)]

    def record_config_event(
        self, event: AuditEvent, *, actor: str, notes: str,
        details: Mapping[str, Any] | None = None, model_version: str | None = None,
        old_status: str | None = None, new_status: str | None = None,
    ) -> int:  # fmt: skip
        """Append one row to ``audit.config_changes``; its ``change_id``."""
        try:
            kind = AuditEvent(event)
        except ValueError:
            raise _refused(
                f"event {event!r} is not one of {[str(e) for e in AuditEvent]}"
            ) from None
        for name, status in (("old_status", old_status), ("new_status", new_status)):
            if status is not None:
                _text(name, status, STATUS_MAX)
        if model_version is not None:
            _text("model_version", model_version, 64)
        values = {
            "event": kind.value, "actor": _text("actor", actor, NAME_MAX),
            "notes": _text("notes", need_notes(notes, f"recording {kind.value}"), REASON_MAX),
            "model_version": model_version, "old_status": old_status,
            "new_status": new_status, "details": _document("details", details),
        }  # fmt: skip
        with self.engine.begin() as conn:
            return chained(conn, CONFIG_CHAIN, values)

    def config_events(self, until: datetime | None = None) -> list[StatusChange]:
        """``audit.config_changes`` rows (at or before ``until``), oldest first."""
        from mlcore.registry._versions import change_record

        t = config_changes
        query = select(t).order_by(t.c.change_id)
        if until is not None:
            query = query.where(t.c.changed_at <= _utc(until))
        with self.engine.connect() as conn:
            return [change_record(r) for r in conn.execute(query)]

    def state_at(self, at: datetime) -> StateAt:
        """What was in force at ``at`` (see ``_state_at``), from the rows at or before it."""
        return state_at(at, self.config_events(until=at), self.actions(until=at))

    def verify(self, heads: Iterable[str] = ()) -> ChainReport:
        """Check both chains, row by row, and that each of ``heads`` (row hashes recorded
        earlier) is still the hash of a row: rows removed from a chain's end show there."""
        rows: dict[str, int] = {}
        breaks: list[Break] = []
        newest: dict[str, tuple[int, str | None]] = {}
        held: set[str] = set()
        wanted = sorted(set(heads))
        with self.engine.connect() as conn:
            for chain in CHAINS:
                count, found = read_chain(conn, chain)
                rows[chain.name] = count
                breaks += found
                t, id_col = chain.table, chain.table.c[chain.id_column]
                last = conn.execute(
                    select(id_col, t.c.row_hash).order_by(id_col.desc()).limit(1)
                ).first()
                if last is not None:
                    newest[chain.name] = (int(last[0]), last[1])
                if wanted:
                    held |= set(
                        conn.execute(select(t.c.row_hash).where(t.c.row_hash.in_(wanted))).scalars()
                    )
        return ChainReport(rows, breaks, newest, [h for h in wanted if h not in held])


def _utc(when: datetime) -> datetime:
    # SQLite stores UTC wall time: a bound aware time must be UTC before it is compared.
    return aware(when).astimezone(UTC)
