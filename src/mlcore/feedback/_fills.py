"""The fill record (``result.json`` from the execution side, or a message on ``core:fills``)
and its parser: bytes in, a typed :class:`Fill` or a :class:`Rejection` with its reason out;
never an exception, whatever the bytes.

A fill (schema ``mlcore.fill.v1``)::

    {"schema": "mlcore.fill.v1", "fill_id": "EA-1234", "signal_id": "<32 hex>",
     "pair_id": "EUR_GBP", "model_version": "...",          # model_version optional
     "action": "entry" | "exit", "side": 1 | -1, "filled_at": "2025-01-02T10:00:03Z",
     "legs": [{"symbol": "EUR/USD", "side": "BUY" | "SELL", "qty": 1000.0,
               "price": 1.0832, "fee_usd": 0.4}, {...}],   # two legs, the signal's order
     "metadata": {...}}                                      # optional, the executor's own

``price`` is in the account currency (USD) per unit, as the signal's ``notional_usd / units``;
``fee_usd`` is what the venue charged besides the price (commission, fees).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

FILL_SCHEMA: Final = "mlcore.fill.v1"
_FILL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_SIGNAL_ID = re.compile(r"[0-9a-f]{32}")
_KEYS: Final = frozenset(
    {"schema", "fill_id", "signal_id", "pair_id", "model_version", "action", "side",
     "filled_at", "legs", "metadata"}
)  # fmt: skip
_REQUIRED: Final = _KEYS - {"model_version", "metadata"}
_LEG_KEYS: Final = frozenset({"symbol", "side", "qty", "price", "fee_usd"})


class FillSource(StrEnum):
    """Where a fill came from."""

    FILE = "file"
    STREAM = "stream"
    SIMULATE = "simulate"


class FillAction(StrEnum):
    """What the filled order did."""

    ENTRY = "entry"
    EXIT = "exit"


class Reason(StrEnum):
    """Why a fill was quarantined."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    BAD_SCHEMA = "bad_schema"
    BAD_NUMBER = "bad_number"
    UNKNOWN_PAIR = "unknown_pair"
    ORPHAN = "orphan"
    SIGNAL_MISMATCH = "signal_mismatch"
    SIDE_MISMATCH = "side_mismatch"
    FUTURE_FILL = "future_fill"
    BEFORE_SIGNAL = "before_signal"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    BAD_MESSAGE = "bad_message"
    NOT_A_FILE = "not_a_file"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class FillLeg:
    """One leg as filled."""

    symbol: str
    side: str  # BUY / SELL
    qty: float
    price: float  # account currency (USD) per unit
    fee_usd: float

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self.side == "BUY" else -1


@dataclass(frozen=True)
class Fill:
    """A parsed, well-formed fill (not yet checked against its signal)."""

    fill_id: str
    signal_id: str
    pair_id: str
    model_version: str | None
    action: FillAction
    side: int
    filled_at: datetime
    legs: tuple[FillLeg, FillLeg]


@dataclass(frozen=True)
class Rejection:
    """Why a fill cannot land; ``fill_id`` when it could be read."""

    reason: Reason
    message: str
    fill_id: str | None = None


class _Bad(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _no_constant(name: str) -> float:
    raise _Bad(Reason.BAD_NUMBER, f"{name} is not a number JSON allows")


def _str(doc: dict[str, Any], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise _Bad(Reason.BAD_SCHEMA, f"{key} must be a non-empty string, got {_show(value)}")
    if pattern is not None and not pattern.fullmatch(value):
        raise _Bad(Reason.BAD_SCHEMA, f"{key} {_show(value)} does not match {pattern.pattern}")
    return value


def _number(doc: dict[str, Any], key: str, *, positive: bool) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(Reason.BAD_SCHEMA, f"{key} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        need = "> 0" if positive else ">= 0"
        raise _Bad(Reason.BAD_NUMBER, f"{key} must be finite and {need}, got {_show(value)}")
    return number


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _timestamp(doc: dict[str, Any]) -> datetime:
    text = _str(doc, "filled_at")
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(Reason.BAD_SCHEMA, f"filled_at {_show(text)} is not an ISO time") from None
    if at.tzinfo is None:
        raise _Bad(Reason.BAD_SCHEMA, f"filled_at {_show(text)} has no time zone")
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise _Bad(Reason.BAD_SCHEMA, f"filled_at {_show(text)} is out of range") from None


def _leg(doc: Any, i: int) -> FillLeg:
    if not isinstance(doc, dict):
        raise _Bad(Reason.BAD_SCHEMA, f"legs[{i}] must be an object")
    if set(doc) != _LEG_KEYS:
        raise _Bad(Reason.BAD_SCHEMA, f"legs[{i}] must have exactly {sorted(_LEG_KEYS)}")
    side = doc["side"]
    if side not in ("BUY", "SELL"):
        raise _Bad(Reason.BAD_SCHEMA, f"legs[{i}].side must be BUY or SELL, got {_show(side)}")
    return FillLeg(
        symbol=_str(doc, "symbol"), side=side,
        qty=_number(doc, "qty", positive=True), price=_number(doc, "price", positive=True),
        fee_usd=_number(doc, "fee_usd", positive=False),
    )  # fmt: skip


def _decode(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise _Bad(Reason.TOO_LARGE, f"{len(raw)} bytes, more than max_bytes {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(Reason.NOT_UTF8, f"not UTF-8 at byte {exc.start}") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise _Bad(Reason.BAD_JSON, f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(doc, dict):
        raise _Bad(Reason.BAD_SCHEMA, f"a fill is a JSON object, got {type(doc).__name__}")
    return doc


def _fill(doc: dict[str, Any], known_pairs: frozenset[str]) -> Fill:
    if doc.get("schema") != FILL_SCHEMA:
        raise _Bad(
            Reason.BAD_SCHEMA, f"schema must be {FILL_SCHEMA!r}, got {_show(doc.get('schema'))}"
        )
    if not _REQUIRED <= set(doc) or not set(doc) <= _KEYS:
        missing, extra = sorted(_REQUIRED - set(doc)), sorted(set(doc) - _KEYS)
        raise _Bad(Reason.BAD_SCHEMA, f"keys missing {missing}, unknown {_show(extra)}")
    if "metadata" in doc and not isinstance(doc["metadata"], dict):
        raise _Bad(Reason.BAD_SCHEMA, "metadata must be an object")
    action, side, legs = doc["action"], doc["side"], doc["legs"]
    if action not in ("entry", "exit"):
        raise _Bad(Reason.BAD_SCHEMA, f"action must be entry or exit, got {_show(action)}")
    if isinstance(side, bool) or side not in (1, -1) or not isinstance(side, int):
        raise _Bad(Reason.BAD_SCHEMA, f"side must be 1 or -1, got {_show(side)}")
    if not isinstance(legs, list) or len(legs) != 2:
        raise _Bad(Reason.BAD_SCHEMA, "legs must be a list of two legs")
    pair_id = _str(doc, "pair_id")
    version = _str(doc, "model_version") if "model_version" in doc else None
    fill = Fill(
        fill_id=_str(doc, "fill_id", _FILL_ID), signal_id=_str(doc, "signal_id", _SIGNAL_ID),
        pair_id=pair_id, model_version=version, action=FillAction(action), side=side,
        filled_at=_timestamp(doc), legs=(_leg(legs[0], 0), _leg(legs[1], 1)),
    )  # fmt: skip
    if pair_id not in known_pairs:
        raise _Bad(Reason.UNKNOWN_PAIR, f"pair_id {_show(pair_id)} is not a pair of universe.yaml")
    return fill


def parse_fill(raw: bytes, *, max_bytes: int, known_pairs: frozenset[str]) -> Fill | Rejection:
    """A fill from its bytes, or why not (never raises)."""
    doc: dict[str, Any] | None = None
    try:
        doc = _decode(raw, max_bytes)
        return _fill(doc, known_pairs)
    except _Bad as bad:
        fill_id = doc.get("fill_id") if doc is not None else None
        readable = isinstance(fill_id, str) and _FILL_ID.fullmatch(fill_id) is not None
        return Rejection(bad.reason, str(bad), fill_id if readable else None)


def fill_document(fill: Fill) -> dict[str, Any]:
    """The JSON document of ``fill`` (what :func:`parse_fill` reads back as the same fill)."""
    doc: dict[str, Any] = {
        "schema": FILL_SCHEMA, "fill_id": fill.fill_id, "signal_id": fill.signal_id,
        "pair_id": fill.pair_id, "action": str(fill.action), "side": fill.side,
        "filled_at": fill.filled_at.isoformat().replace("+00:00", "Z"),
        "legs": [{"symbol": g.symbol, "side": g.side, "qty": g.qty, "price": g.price,
                  "fee_usd": g.fee_usd} for g in fill.legs],
    }  # fmt: skip
    if fill.model_version is not None:
        doc["model_version"] = fill.model_version
    return doc


def encode_fill(fill: Fill) -> bytes:
    """``fill`` as canonical JSON bytes (sorted keys)."""
    return json.dumps(fill_document(fill), sort_keys=True, allow_nan=False).encode()
