"""The hash chain of the append-only audit tables (``audit.config_changes`` and
``audit.analytics_actions``).

Each row carries ``prev_hash`` (the ``row_hash`` of the row before it in id order; the first
row: :data:`GENESIS`) and ``row_hash``: the sha256 of :func:`canonical`, a serialisation of
every column but ``row_hash`` (sorted-key JSON, timestamps as ISO 8601 UTC with microseconds,
floats as their ``repr``). Appends to one table go one at a time (PostgreSQL: an advisory
transaction lock per table; SQLite: transactions begin with the write lock), so the chain
never forks. Changing, removing or reordering a row breaks the chain at that row:
:func:`check_chain` names it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, Table, select, text

from mlcore.registry._tables import analytics_actions, config_changes

#: The ``prev_hash`` of a table's first row.
GENESIS: Final = "0" * 64


@dataclass(frozen=True)
class Chain:
    """One hash-chained table: its id and time columns, its name in messages, its lock key."""

    table: Table
    id_column: str
    time_column: str
    name: str
    lock_key: int


CONFIG_CHAIN: Final = Chain(config_changes, "change_id", "changed_at", "audit.config_changes",
                            727274)  # fmt: skip
ACTION_CHAIN: Final = Chain(analytics_actions, "action_id", "occurred_at",
                            "audit.analytics_actions", 727275)  # fmt: skip
CHAINS: Final = (ACTION_CHAIN, CONFIG_CHAIN)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat(timespec="microseconds")
    raise TypeError(f"{type(value).__name__} is not stored in an audit row")


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash covers: every column but ``row_hash``, as sorted-key JSON."""
    body = {k: v for k, v in row.items() if k != "row_hash"}
    return json.dumps(
        body, default=_plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")  # fmt: skip


def row_hash(row: Mapping[str, Any]) -> str:
    """The sha256 (hex) of :func:`canonical`."""
    return hashlib.sha256(canonical(row)).hexdigest()


def _json_value(value: Any) -> Any:
    """What JSON lacks, as a document records it: a set as its sorted list (the flags' pair
    sets), a NumPy scalar as its number; anything else refused."""
    if isinstance(value, (set, frozenset)):
        return sorted(value)  # TypeError for a set of mixed types: refused
    item = getattr(value, "item", None)
    if callable(item) and hasattr(value, "dtype"):
        plain = item()
        if isinstance(plain, (bool, int, float, str)):
            return plain
    raise TypeError(f"a {type(value).__name__} is not JSON")


def stored(name: str, value: Any) -> Any:
    """``value`` as the database hands it back (a JSON document round-tripped: tuples and sets
    become lists, keys strings), so that the hash written is the hash read. ``ValueError`` naming
    ``name`` for what cannot be stored: not JSON, NaN or infinity, a NUL character, text that
    is not UTF-8."""
    if value is None or isinstance(value, (bool, int, datetime)):
        return value
    try:
        if isinstance(value, str):
            value.encode("utf-8")
            if "\x00" in value:
                raise ValueError("holds a NUL character")
            return value
        body = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_value)
        body.encode("utf-8")
    except (TypeError, ValueError, UnicodeError) as exc:
        raise ValueError(f"{name}: cannot be recorded ({exc})") from None
    if "\\u0000" in body:
        raise ValueError(f"{name}: cannot be recorded (holds a NUL character)")
    return json.loads(body)


def _lock(conn: Connection, chain: Chain) -> None:
    """Appends to one chain go one at a time. SQLite transactions already hold the write lock
    from their ``BEGIN IMMEDIATE`` (see ``make_engine``)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": chain.lock_key})


def append(
    conn: Connection, chain: Chain, values: Mapping[str, Any], at: datetime | None = None
) -> int:
    """Append one row to ``chain`` in the caller's transaction, stamped now (or ``at``),
    linked to the row before it and hashed; its id. ``ValueError`` for a value that cannot be
    stored (nothing written)."""
    table, id_col = chain.table, chain.table.c[chain.id_column]
    unknown = set(values) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{chain.name} has no column {sorted(unknown)[0]!r}")
    # Every column, as it will be read back: the hash covers them all.
    row = {c: stored(c, values.get(c)) for c in table.c.keys()}
    _lock(conn, chain)
    last = conn.execute(select(id_col, table.c.row_hash).order_by(id_col.desc()).limit(1)).first()
    last_id = 0 if last is None else int(last[0])
    new_id = last_id + 1
    if conn.dialect.name == "postgresql":
        # Taken under the lock: ids grow in chain order (a rolled-back append leaves a gap).
        seq = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, :c))"),
            {"t": chain.name, "c": chain.id_column},
        ).scalar_one()
        new_id = max(int(seq), new_id)
    row[chain.id_column] = new_id
    row[chain.time_column] = at if at is not None else datetime.now(UTC)
    row["prev_hash"] = GENESIS if last is None else last[1]
    row["row_hash"] = row_hash(row)
    conn.execute(table.insert().values(**row))
    return new_id


def _hash_or_none(row: Mapping[str, Any]) -> str | None:
    """The row's hash; None when a value in it was never one the chain writes (a blob, NaN)."""
    try:
        return row_hash(row)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Break:
    """One row where the chain is broken, and how."""

    table: str
    row_id: int
    problem: str

    def __str__(self) -> str:
        return f"row {self.row_id} of {self.table}: {self.problem}"


def check_chain(
    name: str, id_column: str, rows: Iterable[Mapping[str, Any]]
) -> tuple[int, list[Break]]:
    """How many rows there are and where the chain of ``rows`` (in id order) is broken: a row
    whose content does not match its hash, a row whose ``prev_hash`` is not its predecessor's
    hash (a row removed or reordered before it)."""
    count, breaks = 0, []
    expected: str | None = GENESIS
    prev_id = None
    for row in rows:
        count += 1
        rid = int(row[id_column])
        own = row.get("row_hash")
        if own is None:
            breaks.append(Break(name, rid, "it has no hash (written around the chain)"))
        elif _hash_or_none(row) != own:
            breaks.append(Break(name, rid, "its content does not match its hash"))
        if row.get("prev_hash") != expected:
            why = (
                "prev_hash is not the chain's first value (rows before it were removed)"
                if prev_id is None
                else f"prev_hash does not match row {prev_id}'s hash (a row was removed or "
                "reordered)"
            )
            breaks.append(Break(name, rid, why))
        expected, prev_id = own, rid
    return count, breaks


def read_chain(conn: Connection, chain: Chain) -> tuple[int, list[Break]]:
    """:func:`check_chain` over the rows of ``chain`` as stored."""
    id_col = chain.table.c[chain.id_column]
    try:
        result = conn.execution_options(yield_per=2000).execute(
            select(chain.table).order_by(id_col)
        )
        return check_chain(chain.name, chain.id_column, [dict(r._mapping) for r in result])
    except (ValueError, TypeError):
        pass  # a value the database hands back unreadable (a text edited into a JSON column)
    # Row by row: each unreadable row is named, the links around it still checked.
    unreadable: list[Break] = []
    rows: list[dict[str, Any]] = []
    links = select(id_col, chain.table.c.prev_hash, chain.table.c.row_hash).order_by(id_col)
    for rid, prev, own in conn.execute(links).all():
        try:
            rows.append(dict(conn.execute(select(chain.table).where(id_col == rid)).one()._mapping))
        except (ValueError, TypeError) as exc:
            why = f"its content cannot be read ({type(exc).__name__}: {str(exc)[:80]})"
            unreadable.append(Break(chain.name, int(rid), why))
            rows.append({chain.id_column: rid, "prev_hash": prev, "row_hash": own})
    count, found = check_chain(chain.name, chain.id_column, rows)
    skip = {b.row_id for b in unreadable}
    kept = [b for b in found if b.row_id not in skip or "prev_hash" in b.problem]
    return count, sorted(unreadable + kept, key=lambda b: b.row_id)
