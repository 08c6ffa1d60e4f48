"""A worker's local SQLite: its signals (the outbox), the state of its pairs and symbols, and
how far it has read its bar sources — all committed in one transaction, so a worker killed at
any instant resumes from a consistent point and reproduces the same signals (same ids)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    pair_id TEXT NOT NULL,
    bar_ts_ns INTEGER NOT NULL,
    payload BLOB NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    aggregated INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    inference_ns INTEGER
);
CREATE INDEX IF NOT EXISTS signals_undelivered ON signals (delivered, seq);
CREATE INDEX IF NOT EXISTS signals_unaggregated ON signals (aggregated, seq);
CREATE TABLE IF NOT EXISTS pair_state (
    pair_id TEXT PRIMARY KEY,
    model_version TEXT NOT NULL,
    engine BLOB NOT NULL,
    rest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    position TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    raw BLOB NOT NULL,
    at_ns INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    symbol TEXT,
    bar_ts_ns INTEGER,
    aggregated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_ADDED = (
    ("signals", "expired", "INTEGER NOT NULL DEFAULT 0"),
    ("signals", "inference_ns", "INTEGER"),
    ("dead_letters", "symbol", "TEXT"),
    ("dead_letters", "bar_ts_ns", "INTEGER"),
    ("dead_letters", "aggregated", "INTEGER NOT NULL DEFAULT 0"),
)


class Outbox:
    """The SQLite file of one worker."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        # An outbox made by an older release gets the columns added since (valid_until held at
        # delivery; the live KPIs' inference time and refused bars).
        for table, column, kind in _ADDED:
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def close(self) -> None:
        """Close the file."""
        self.conn.close()

    def commit(
        self, signals: Iterable[tuple[Any, ...]],
        states: Mapping[str, tuple[str, bytes, str]], kv: Mapping[str, str],
        dead: Iterable[tuple[Any, ...]] = (),
    ) -> int:  # fmt: skip
        """Store signals (id, pair_id, bar_ts_ns, payload, delivered: 1 when Redis has it
        already, and optionally inference_ns: the decision's compute time; an id already
        stored is kept as it was), pair states (pair_id → model_version, engine, rest),
        key-values and dead letters (id, source, position, reason, detail, raw, at_ns, and
        optionally symbol and bar_ts_ns where the message said them; each id once) at once;
        return how many signals were new."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO signals (id, pair_id, bar_ts_ns, payload, delivered, "
                "inference_ns) VALUES (?,?,?,?,?,?)",
                [_padded(r, 5, 1) for r in signals],
            )
            new = c.total_changes - before
            c.executemany(
                "INSERT OR REPLACE INTO pair_state VALUES (?,?,?,?)",
                [(p, v, e, r) for p, (v, e, r) in states.items()],
            )
            c.executemany("INSERT OR REPLACE INTO kv VALUES (?,?)", list(kv.items()))
            c.executemany(
                "INSERT OR IGNORE INTO dead_letters (id, source, position, reason, detail, raw, "
                "at_ns, symbol, bar_ts_ns) VALUES (?,?,?,?,?,?,?,?,?)",
                [_padded(r, 7, 2) for r in dead],
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return new

    def states(self) -> dict[str, tuple[str, bytes, str]]:
        """pair_id → (model_version, engine state, rest) as last committed."""
        rows = self.conn.execute("SELECT pair_id, model_version, engine, rest FROM pair_state")
        return {p: (v, e, r) for p, v, e, r in rows}

    def kv(self) -> dict[str, str]:
        """The key-values as last committed."""
        return dict(self.conn.execute("SELECT key, value FROM kv").fetchall())

    def pending(self, column: str, limit: int) -> list[tuple[int, str, bytes]]:
        """(seq, id, payload) not yet ``delivered`` / ``aggregated``, oldest first."""
        if column not in ("delivered", "aggregated"):
            raise ValueError(f"unknown outbox column {column!r}")
        return self.conn.execute(
            f"SELECT seq, id, payload FROM signals WHERE {column} = 0 ORDER BY seq LIMIT ?",  # noqa: S608 - column checked above
            (limit,),
        ).fetchall()

    def to_aggregate(self, limit: int) -> list[tuple[int, bytes, int | None]]:
        """(seq, payload, inference_ns) of the signals not yet aggregated, oldest first."""
        return self.conn.execute(
            "SELECT seq, payload, inference_ns FROM signals WHERE aggregated = 0 ORDER BY seq "
            "LIMIT ?",
            (limit,),
        ).fetchall()

    def dead_to_aggregate(self, limit: int) -> list[tuple[Any, ...]]:
        """(seq, id, source, position, reason, detail, at_ns, symbol, bar_ts_ns) of the dead
        letters not yet aggregated, oldest first."""
        return self.conn.execute(
            "SELECT seq, id, source, position, reason, detail, at_ns, symbol, bar_ts_ns "
            "FROM dead_letters WHERE aggregated = 0 ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()

    def mark_dead_aggregated(self, up_to_seq: int) -> None:
        """Mark the dead letters up to ``up_to_seq`` as aggregated."""
        self.conn.execute(
            "UPDATE dead_letters SET aggregated = 1 WHERE aggregated = 0 AND seq <= ?",
            (up_to_seq,),
        )

    def mark(self, column: str, up_to_seq: int) -> None:
        """Mark every row up to ``up_to_seq`` as done for ``column``."""
        if column not in ("delivered", "aggregated"):
            raise ValueError(f"unknown outbox column {column!r}")
        self.conn.execute(
            f"UPDATE signals SET {column} = 1 WHERE {column} = 0 AND seq <= ?",  # noqa: S608
            (up_to_seq,),
        )

    def mark_expired(self, seqs: list[int]) -> None:
        """Archive these rows as expired: never sent (``delivered`` set, so not pending)."""
        self.conn.executemany(
            "UPDATE signals SET expired = 1, delivered = 1 WHERE seq = ?", [(q,) for q in seqs]
        )

    def expired_ids(self) -> list[str]:
        """The ids of the signals archived as expired, oldest first."""
        rows = self.conn.execute("SELECT id FROM signals WHERE expired = 1 ORDER BY seq")
        return [r[0] for r in rows]

    def count(self, column: str | None = None) -> int:
        """Signals stored (or still pending for ``column``)."""
        where = "" if column is None else f" WHERE {column} = 0"
        if column not in (None, "delivered", "aggregated"):
            raise ValueError(f"unknown outbox column {column!r}")
        return int(self.conn.execute(f"SELECT count(*) FROM signals{where}").fetchone()[0])  # noqa: S608

    def payloads(self) -> list[bytes]:
        """Every stored signal, in the order produced."""
        return [r[0] for r in self.conn.execute("SELECT payload FROM signals ORDER BY seq")]

    def dead_letters(self, pending_only: bool = False, limit: int = -1) -> list[tuple[Any, ...]]:
        """(seq, id, source, position, reason, detail, raw, at_ns) of the dead letters, oldest
        first (only those Redis has not taken yet)."""
        return self.conn.execute(
            "SELECT seq, id, source, position, reason, detail, raw, at_ns FROM dead_letters "
            "WHERE delivered = 0 OR ? = 0 ORDER BY seq LIMIT ?",
            (int(pending_only), limit),
        ).fetchall()

    def mark_dead_delivered(self, up_to_seq: int) -> None:
        """Mark the dead letters up to ``up_to_seq`` as taken by Redis."""
        self.conn.execute(
            "UPDATE dead_letters SET delivered = 1 WHERE delivered = 0 AND seq <= ?", (up_to_seq,)
        )


def _padded(row: tuple[Any, ...], required: int, optional: int) -> tuple[Any, ...]:
    """``row`` with its missing optional trailing values as NULL (a row of another length is
    passed on whole, for SQLite to refuse)."""
    if len(row) == required:
        return (*row, *([None] * optional))
    return row
