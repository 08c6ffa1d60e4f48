"""Landing one fill: parse, look its signal up, check, and in one transaction either insert the
live trade (nothing when its fill id is there already: idempotent) or quarantine it with its
reason. Never raises for what the bytes hold; a database error propagates (the caller keeps the
file or leaves the message unacknowledged, to be tried again)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, not_, select, update

from mlcore.feedback._fills import (
    Fill,
    FillAction,
    FillSource,
    Reason,
    Rejection,
    fill_document,
    parse_fill,
)
from mlcore.feedback._live_trades import (
    LiveTrade,
    SignalRef,
    TradeLeg,
    as_utc,
    build_trade,
    check_against_signal,
    realized_pnl_usd,
    signal_ref,
)
from mlcore.registry import fills_quarantine, live_trades, signals_history, signals_live


class Landed(StrEnum):
    """What became of one fill."""

    NEW = "new"  # a new live trade
    DUPLICATE = "duplicate"  # its fill id had landed already, with the same content
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class LandRules:
    """What a fill is checked against besides its signal."""

    max_bytes: int
    known_pairs: frozenset[str]
    max_clock_skew_seconds: float


def find_signal(conn: Connection, signal_id: str) -> SignalRef | None:
    """The signal of that id, from ``core.signals_live`` then ``core.signals_history``."""
    for table in (signals_live, signals_history):
        row = conn.execute(select(table).where(table.c.signal_id == signal_id)).mappings().first()
        if row is not None:
            return signal_ref(row)
    return None


def trade_from_row(row: Any) -> LiveTrade:
    """A :class:`LiveTrade` from its ``core.live_trades`` row."""
    return LiveTrade(
        fill_id=row["fill_id"], signal_id=row["signal_id"], model_version=row["model_version"],
        pair_id=row["pair_id"], action=FillAction(row["action"]), side=int(row["side"]),
        filled_at=as_utc(row["filled_at"]), signal_ts=as_utc(row["signal_ts"]),
        legs=tuple(TradeLeg(**g) for g in row["legs"]), notional_usd=row["notional_usd"],
        slippage_bps=row["slippage_bps"], cost_usd=row["cost_usd"],
        expected_cost_usd=row["expected_cost_usd"], entry_fill_id=row["entry_fill_id"],
        pnl_usd=row["pnl_usd"], source=FillSource(row["source"]),
        received_at=as_utc(row["received_at"]),
    )  # fmt: skip


def _open_entry(conn: Connection, fill: Fill, version: str) -> LiveTrade | None:
    """The newest entry of the pair and version, on the side the exit closes, filled before
    it and not closed by another exit."""
    t, closed = live_trades, live_trades.alias("closed")
    query = (
        select(t)
        .where(
            t.c.pair_id == fill.pair_id,
            t.c.model_version == version,
            t.c.action == FillAction.ENTRY.value,
            t.c.side == -fill.side,
            t.c.filled_at <= fill.filled_at,
            not_(select(closed.c.fill_id).where(closed.c.entry_fill_id == t.c.fill_id).exists()),
        )
        .order_by(t.c.filled_at.desc())
        .limit(1)
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else trade_from_row(row)


def _close_early_exit(conn: Connection, entry: LiveTrade) -> None:
    """Fills may arrive out of order: an exit that landed before its entry (no P&L then) is
    linked to this entry now, with its P&L: the first unlinked exit of the pair and version
    filled after the entry, on the closing side."""
    t = live_trades
    row = conn.execute(
        select(t).where(
            t.c.pair_id == entry.pair_id, t.c.model_version == entry.model_version,
            t.c.action == FillAction.EXIT.value, t.c.side == -entry.side,
            t.c.entry_fill_id.is_(None), t.c.filled_at >= entry.filled_at,
        ).order_by(t.c.filled_at).limit(1)
    ).mappings().first()  # fmt: skip
    if row is None:
        return
    exit_ = trade_from_row(row)
    conn.execute(update(t).where(t.c.fill_id == exit_.fill_id).values(
        entry_fill_id=entry.fill_id, pnl_usd=realized_pnl_usd(entry, exit_.legs)))  # fmt: skip


def quarantine_id(source: FillSource, location: str, raw: bytes) -> str:
    """The same bytes from the same place quarantine once, however often they are seen."""
    key = hashlib.sha256(f"{source}|{location}|".encode() + raw).hexdigest()
    return key[:40]


def _quarantine(
    conn: Connection, raw: bytes, source: FillSource, location: str, bad: Rejection,
    now: datetime,
) -> None:  # fmt: skip
    qid = quarantine_id(source, location, raw)
    if conn.execute(select(fills_quarantine.c.quarantine_id).where(
            fills_quarantine.c.quarantine_id == qid)).first() is None:  # fmt: skip
        conn.execute(insert(fills_quarantine).values(
            quarantine_id=qid, source=str(source), location=location[:2000],
            reason=str(bad.reason), message=bad.message[:2000], fill_id=bad.fill_id, raw=raw,
            received_at=now,
        ))  # fmt: skip


def _row(trade: LiveTrade, doc: dict[str, Any]) -> dict[str, Any]:
    row = asdict(trade)
    row["legs"] = [asdict(g) for g in trade.legs]
    row["action"], row["source"] = str(trade.action), str(trade.source)
    row["raw"] = doc
    return row


@dataclass(frozen=True)
class Incoming:
    """One fill's bytes as received, and where from."""

    raw: bytes
    source: FillSource
    location: str
    refused: Rejection | None = None  # refused before parsing (a link, an unreadable file)


def land_fill(
    engine: Engine, raw: bytes, source: FillSource, location: str, rules: LandRules,
    now: datetime,
) -> tuple[Landed, Rejection | None]:  # fmt: skip
    """Land one fill's bytes (see the module docstring); the rejection when quarantined."""
    return land_fills(engine, [Incoming(raw, source, location)], rules, now)[0]


def land_fills(
    engine: Engine, items: list[Incoming], rules: LandRules, now: datetime
) -> list[tuple[Landed, Rejection | None]]:
    """Land several fills in one transaction (in order: a fill sees those before it)."""
    with engine.begin() as conn:
        return [_land(conn, item, rules, now) for item in items]


def _land(
    conn: Connection, item: Incoming, rules: LandRules, now: datetime
) -> tuple[Landed, Rejection | None]:
    raw, source, location = item.raw, item.source, item.location
    parsed = item.refused or parse_fill(raw, max_bytes=rules.max_bytes,
                                        known_pairs=rules.known_pairs)  # fmt: skip
    if isinstance(parsed, Rejection):
        _quarantine(conn, raw, source, location, parsed, now)
        return Landed.QUARANTINED, parsed
    doc = fill_document(parsed)
    before = conn.execute(
        select(live_trades.c.raw).where(live_trades.c.fill_id == parsed.fill_id)
    ).first()
    if before is not None:
        if _same(before[0], doc):
            return Landed.DUPLICATE, None
        why = f"fill {parsed.fill_id} landed before with other content"
        bad = Rejection(Reason.DUPLICATE_CONFLICT, why, parsed.fill_id)
        _quarantine(conn, raw, source, location, bad, now)
        return Landed.QUARANTINED, bad
    signal = find_signal(conn, parsed.signal_id)
    bad_or_none = check_against_signal(parsed, signal, now, rules.max_clock_skew_seconds)
    if bad_or_none is not None or signal is None:
        bad = bad_or_none or Rejection(Reason.ORPHAN, "no signal", parsed.fill_id)
        _quarantine(conn, raw, source, location, bad, now)
        return Landed.QUARANTINED, bad
    entry = (_open_entry(conn, parsed, signal.model_version)
             if parsed.action == FillAction.EXIT else None)  # fmt: skip
    trade = build_trade(parsed, signal, entry, source, now)
    conn.execute(insert(live_trades).values(**_row(trade, doc)))
    if trade.action == FillAction.ENTRY:
        _close_early_exit(conn, trade)
    return Landed.NEW, None


def _same(stored: Any, doc: dict[str, Any]) -> bool:
    stored_doc = json.loads(stored) if isinstance(stored, str) else stored
    return bool(stored_doc == doc)


def read_trades(
    engine: Engine, *, model_version: str | None = None, pair_id: str | None = None,
    since: datetime | None = None,
) -> list[LiveTrade]:  # fmt: skip
    """Live trades, oldest fill first, of one version / pair / since a time when given."""
    t = live_trades
    conds = [c for c in (
        t.c.model_version == model_version if model_version is not None else None,
        t.c.pair_id == pair_id if pair_id is not None else None,
        t.c.filled_at >= since if since is not None else None,
    ) if c is not None]  # fmt: skip
    query = select(t).where(and_(True, *conds)).order_by(t.c.filled_at, t.c.fill_id)
    with engine.connect() as conn:
        return [trade_from_row(r) for r in conn.execute(query).mappings()]


@dataclass(frozen=True)
class QuarantinedFill:
    """One quarantined fill, as listed."""

    source: str
    location: str
    reason: str
    message: str
    fill_id: str | None
    received_at: datetime


def read_quarantine(engine: Engine, limit: int | None = None) -> list[QuarantinedFill]:
    """Quarantined fills, newest first."""
    q = fills_quarantine
    query = select(q.c.source, q.c.location, q.c.reason, q.c.message, q.c.fill_id,
                   q.c.received_at).order_by(q.c.received_at.desc()).limit(limit)  # fmt: skip
    with engine.connect() as conn:
        return [QuarantinedFill(r.source, r.location, r.reason, r.message, r.fill_id,
                                as_utc(r.received_at)) for r in conn.execute(query)]  # fmt: skip
