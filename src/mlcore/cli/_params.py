"""Parsers of the options that take a constrained value: a bad value is a usage error (exit
2) on one line naming the option, the value and what is accepted. Pure, and light to import:
``mlcore --help`` loads this module."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from mlcore.errors import shown

ENVIRONMENTS = ("dev", "stg", "prod")
# The registry's statuses (mlcore.registry.STATUSES; a unit test keeps the two equal).
STATUSES = ("draft", "candidate", "approved", "rejected", "deployed", "rolled_back")
SEED_MAX = 2**32 - 1  # numpy's and LightGBM's seed range
_VERSION = re.compile(r"^\d{8}_\d{4}_[A-Za-z0-9]+(_\d+)?$")
TIMEFRAME_HELP = (
    "Bar timeframe: 1min, 5min, 15min, 30min, 1h, 4h, 1day; also 1m, 5m, 60min, 1H, h, "
    "hourly, 1d, D, daily (m is a minute)."
)
TIME_FIRST = datetime(1970, 1, 1, tzinfo=UTC)
TIME_LAST = datetime(2262, 4, 11, tzinfo=UTC)  # pandas' last nanosecond timestamp day
TIME_HELP = "ISO 8601 date or time, e.g. 2024-03-04 or 2024-03-04T09:30+09:00 (no offset: UTC)"


class Source(StrEnum):
    """Where ``ingest`` takes bars from."""

    file = "file"
    twelvedata = "twelvedata"
    auto = "auto"


class FlowName(StrEnum):
    """Which flow ``flows run`` starts."""

    retrain = "retrain"
    backtest = "backtest"
    theta = "theta"
    publish = "publish"


class BarSource(StrEnum):
    """Where ``serve`` reads live bars from."""

    redis = "redis"
    file = "file"


Status = StrEnum("Status", {s: s for s in STATUSES})  # type: ignore[misc]
Target = StrEnum("Target", {s: s for s in ("candidate", "approved", "deployed", "rejected")})  # type: ignore[misc]


def parse_environment(text: str) -> str:
    """An environment name (dev, stg, prod)."""
    if text not in ENVIRONMENTS:
        raise typer.BadParameter(f"{text!r} is not one of {', '.join(ENVIRONMENTS)}")
    return text


def parse_timeframe(text: str) -> str:
    """The canonical timeframe a user's spelling names (see mlcore.config.parse_timeframe)."""
    from mlcore.config import parse_timeframe as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time, as an aware UTC datetime (no offset given: UTC), inside the
    range a bar time can have (1970 to 2262, pandas' nanosecond timestamps)."""
    try:
        when = datetime.fromisoformat(text.strip())
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):  # year 1 at +14:00 overflows the UTC conversion
        raise typer.BadParameter(f"{shown(text)} is not an {TIME_HELP}") from None
    if not TIME_FIRST <= when <= TIME_LAST:
        raise typer.BadParameter(
            f"{shown(text)} is outside {TIME_FIRST:%Y-%m-%d} to {TIME_LAST:%Y-%m-%d}"
        )
    return when


def parse_tz(text: str) -> str:
    """An IANA time zone name (``UTC``, ``Europe/London``, ``America/New_York`` ...)."""
    name = "UTC" if text.strip().upper() in ("UTC", "Z") else text.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(
            f"{text!r} is not an IANA time zone (e.g. UTC, Europe/London, America/New_York)"
        ) from None
    return name


DATE_FORMAT_HELP = (
    "How 03/04/2024-style file dates are read: auto (decided by the file; refused when no "
    "day above 12 decides it), dmy, mdy, ymd, iso, or a strftime pattern such as "
    "'%d/%m/%Y %H:%M'. Rows not in the format are rejected"
)


def parse_date_format(text: str) -> str:
    """``auto``, ``dmy``, ``mdy``, ``ymd``, ``iso`` or a strftime pattern with a full date."""
    from mlcore.data import check_date_format  # pandas: not loaded for --help

    try:
        return check_date_format(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_version(text: str) -> str:
    """A model version name: ``YYYYMMDD_HHMM_<code>`` (``_2``, ``_3`` ... on a clash)."""
    if not _VERSION.match(text):
        raise typer.BadParameter(
            f"{text!r} is not a model version (YYYYMMDD_HHMM_<code>, e.g. 20250101_0000_abc1234)"
        )
    return text


def parse_cron(text: str) -> str:
    """A five-field cron expression."""
    import cronsim

    try:
        cronsim.CronSim(text, datetime.now(UTC))
    except cronsim.CronSimError as exc:
        raise typer.BadParameter(
            f"{text!r} is not a cron expression ({exc}; e.g. '0 2 1 * *')"
        ) from None
    return text


MAX_NOTE_CHARS = 2000  # a reason is a sentence or two; a pasted file is not one


def parse_note(text: str) -> str:
    """A free-text reason, note or actor for the audit trail: one line of printable text
    (a newline would forge a second audit line, an escape sequence repaint a terminal)."""
    bad = sorted({f"U+{ord(c):04X}" for c in text if not c.isprintable()})
    if bad:
        raise typer.BadParameter(
            f"holds control or unprintable characters ({', '.join(bad[:5])}); write one line of "
            "plain text"
        )
    if len(text) > MAX_NOTE_CHARS:
        raise typer.BadParameter(f"{len(text):,} characters, over the {MAX_NOTE_CHARS:,} allowed")
    return text
