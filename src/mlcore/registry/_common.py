"""What the registry's parts share: the clock, one audit-trail writer, the notes rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from mlcore.registry._chain import CONFIG_CHAIN, Chain, append
from mlcore.registry._errors import RegistryError

#: A model version's name, as training makes it: ``YYYYMMDD_HHMM_<code>`` (``_2`` ... on a clash).
VERSION_RE = re.compile(r"^\d{8}_\d{4}_[A-Za-z0-9]+(_\d+)?$")


def check_version_id(name: str) -> str:
    """``name`` if it is a model version name (see ``VERSION_RE``), else ``RegistryError``
    ``REGISTRY_VERSION_ID_INVALID``: a row no command could address is never written."""
    if not VERSION_RE.fullmatch(name):
        raise RegistryError(
            "REGISTRY_VERSION_ID_INVALID",
            f"{name!r} is not a model version name (YYYYMMDD_HHMM_<code>, e.g. "
            "20250101_0000_abc1234): rename the folder",
        )
    return name


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def aware(ts: datetime) -> datetime:
    """``ts`` with its time zone: SQLite hands back naive datetimes (stored as UTC)."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def maybe_aware(ts: datetime | None) -> datetime | None:
    """:func:`aware`, passing ``None`` through."""
    return None if ts is None else aware(ts)


def maybe_float(value: Any) -> float | None:
    """A ``Numeric`` column's value as a float (``None`` stays)."""
    return None if value is None else float(value)


def need_notes(notes: str, what: str) -> str:
    """``notes`` stripped; ``RegistryError`` if there are none (every decision says why)."""
    if not notes or not notes.strip():
        raise RegistryError(
            "REGISTRY_REQUEST_NOTES_MISSING",
            f"{what} needs notes: say why (the spec requires the reason)",
        )
    return notes.strip()


def chained(conn: Connection, chain: Chain, values: dict[str, Any]) -> int:
    """Append one hash-chained row in the caller's transaction (see ``_chain``); its id.
    ``RegistryError`` ``AUDIT_REQUEST_VALUE_INVALID`` for a value that cannot be recorded."""
    try:
        return append(conn, chain, values)
    except ValueError as exc:
        raise RegistryError("AUDIT_REQUEST_VALUE_INVALID", f"not recorded: {exc}") from None


def write_audit(
    conn: Connection, event: str, version: str | None, old: str | None, new: str | None,
    notes: str, actor: str, details: dict[str, Any] | None,
) -> int:  # fmt: skip
    """Write one ``audit.config_changes`` row (hash-chained) in the caller's transaction; its
    ``change_id``."""
    return chained(conn, CONFIG_CHAIN, {
        "actor": actor, "event": str(event), "model_version": version,
        "old_status": None if old is None else str(old),
        "new_status": None if new is None else str(new), "notes": notes, "details": details,
    })  # fmt: skip
