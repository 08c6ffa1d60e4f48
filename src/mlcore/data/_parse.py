"""One table parser for every source: raw columns in, canonical OHLCV rows and rejects out."""

from __future__ import annotations

import math
import re
from calendar import month_name
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES, IsolatedRows
from mlcore.data._provider import FetchResult, Reject
from mlcore.data._rules import dst_rules, isolated_rows, row_rules
from mlcore.errors import BadDataError, shown

BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")

_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": (
        "timestamp",
        "datetime",
        "ts",
        "time_utc",
        "gmttime",
        "localtime",
        "date_time",
    ),
    "open": ("open", "o", "openprice", "open_price"),
    "high": ("high", "h", "highprice", "high_price"),
    "low": ("low", "l", "lowprice", "low_price"),
    "close": ("close", "c", "closeprice", "close_price", "last", "price"),
    "volume": ("volume", "vol", "v", "tickvolume", "tick_volume", "volumeto"),
}


class DateOrder(StrEnum):
    """How slash, dot or dash dates (``03/04/2024``) are read: decided per file (``auto``) or
    named by the user. ``ymd`` also takes ISO 8601; ``iso`` takes ISO 8601 only."""

    AUTO = "auto"
    DMY = "dmy"
    MDY = "mdy"
    YMD = "ymd"
    ISO = "iso"


_TIMES = (" %H:%M:%S.%f", " %H:%M:%S", " %H:%M", "")


def _family(first: str, second: str, third: str, seps: str = "/.-") -> tuple[str, ...]:
    return tuple(f"{first}{s}{second}{s}{third}{t}" for s in seps for t in _TIMES)


_YMD = ("ISO8601", *_family("%Y", "%m", "%d", "/."), "%Y%m%d %H%M%S", "%Y%m%d")
_FAMILIES: dict[DateOrder, tuple[str, ...]] = {
    DateOrder.DMY: _family("%d", "%m", "%Y"),
    DateOrder.MDY: _family("%m", "%d", "%Y"),
    DateOrder.YMD: _YMD,
    DateOrder.ISO: ("ISO8601",),
}
# A day and a month of one or two digits, then a four-digit year: 03/04/2024, 3.4.2024 ...
_DAY_MONTH_RE = r"^(\d{1,2})([/.-])(\d{1,2})\2\d{4}(?:[ T]|$)"
_PROBE = datetime(2024, 1, 2, 3, 4, 5)  # noqa: DTZ001 (a naive probe of a strftime pattern)


def check_date_format(value: str) -> str:
    """``auto``, ``dmy``, ``mdy``, ``ymd``, ``iso`` or a strftime pattern holding a full date
    (``%d/%m/%Y %H:%M``); ValueError naming what is accepted otherwise."""
    word = value.strip().lower()
    if word in {o.value for o in DateOrder}:
        return word
    accepted = "auto, dmy, mdy, ymd, iso or a strftime pattern such as '%d/%m/%Y %H:%M'"
    if "%" not in value:
        raise ValueError(f"{value!r} is not one of {accepted}")
    # A pattern with a zone (%z, %Z) is probed with an aware time: a naive one prints no zone.
    probe = _PROBE.replace(tzinfo=UTC) if re.search(r"%[zZ]", value) else _PROBE
    try:
        back = datetime.strptime(probe.strftime(value), value)  # noqa: DTZ007
    except (ValueError, re.error) as exc:  # re.error: a directive twice (%Y%Y)
        raise ValueError(f"{value!r} is not a usable strftime pattern ({exc})") from None
    if back.date() != _PROBE.date():
        raise ValueError(f"{value!r} does not hold a year, a month and a day ({accepted})")
    return value


def _formats(date_format: str) -> tuple[str, ...]:
    try:
        return _FAMILIES[DateOrder(date_format)]
    except ValueError:
        return (date_format,)


_SAMPLE = 2000
_NO_ROWS = np.zeros(0, dtype=np.int64)


def _norm(name: object) -> str:
    return re.sub(r"[^a-z0-9_]", "", str(name).strip().lower()).replace("_", "") or "unnamed0"


def check_unique_columns(names: list[str], origin: str) -> None:
    """Refuse a header where two columns read as the same field (``close,close`` or
    ``close,Close``): which one holds the prices cannot be told, so neither is guessed."""
    known = {a.replace("_", "") for aliases in _ALIASES.values() for a in aliases}
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_norm(name), []).append(name)
    clashes = [v for k, v in groups.items() if len(v) > 1 and k in known | {"date", "time"}]
    if clashes:
        said = "; ".join(" and ".join(shown(n) for n in group) for group in clashes[:3])
        raise BadDataError(
            "DATA_FILE_SCHEMA",
            f"{origin}: ambiguous columns ({said}): keep one of each",
            details={"origin": origin, "ambiguous": [[shown(n) for n in g] for g in clashes]},
        )


def _resolve_columns(frame: pd.DataFrame, origin: str) -> dict[str, object]:
    """Map canonical names to the frame's columns; fail naming what is missing."""
    normalized = {_norm(c): c for c in frame.columns}
    # "Unnamed: 0" and "" both normalize to unnamed0 (a leading index column).
    mapping: dict[str, object] = {}
    for canon, aliases in _ALIASES.items():
        for alias in aliases:
            key = alias.replace("_", "")
            if key in normalized and normalized[key] not in mapping.values():
                mapping[canon] = normalized[key]
                break
    if "ts" not in mapping and "date" in normalized:
        mapping["ts"] = normalized["date"]
        if "time" in normalized:
            mapping["time"] = normalized["time"]
    elif "ts" not in mapping and "time" in normalized:
        mapping["ts"] = normalized["time"]
    elif "ts" not in mapping and "unnamed0" in normalized:
        # A leading unnamed column holds the timestamps only when nothing else does
        # (pandas writes its DatetimeIndex there; a RangeIndex column is ignored otherwise).
        mapping["ts"] = normalized["unnamed0"]
    missing = [c for c in ("ts", "open", "high", "low", "close") if c not in mapping]
    if missing:
        raise BadDataError(
            "DATA_FILE_SCHEMA",
            f"{origin}: no column for {', '.join(missing)}; columns found: "
            f"{shown([str(c) for c in frame.columns], 200)}",
            details={"origin": origin, "missing": missing},
        )
    return mapping


# Epoch units by magnitude, each row on its own: the ranges of 1973-5138 in seconds, 1973-5138
# in milliseconds, ... do not overlap, so one row in milliseconds among seconds is read right
# instead of turning every other row into a 1970 date.
_EPOCH_UNITS = (("s", 1e11), ("ms", 1e14), ("us", 1e17), ("ns", math.inf))
_NS_PER = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}
_LAST_NS = 9.2e18  # 2261-07: no later instant fits in nanoseconds (its row is rejected)


def _from_epoch(numeric: pd.Series) -> pd.Series:
    """Epoch numbers as UTC instants, the unit of each row from its magnitude."""
    out = pd.Series(pd.NaT, index=numeric.index, dtype="datetime64[ns, UTC]")
    size = numeric.abs()
    low = 0.0
    for unit, high in _EPOCH_UNITS:
        rows = (size >= low) & (size < high) & (size * _NS_PER[unit] < _LAST_NS)
        if rows.any():
            got = pd.to_datetime(numeric[rows], unit=unit, utc=True, errors="coerce")  # type: ignore[call-overload]
            out[rows] = got.astype("datetime64[ns, UTC]")
        low = high
    return out


def _to_utc(parsed: pd.Series, tz: str) -> pd.Series:
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    out: pd.Series = parsed.dt.tz_convert("UTC")
    return out


_OFFSET_RE = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s?(?:Z|[+-]\d{2}:?\d{2})$"
_EPOCH_MIN_S = 1e8  # 1973-03-03: smaller numbers are row numbers or dates, not epochs


def _ranked(sample: pd.Series, formats: tuple[str, ...]) -> tuple[str, ...]:
    """``formats`` ordered by how many rows of ``sample`` each reads (ties: as given)."""
    counts = []
    for fmt in formats:
        try:
            got = pd.to_datetime(sample, format=fmt, errors="coerce", utc=True)
        except (ValueError, TypeError):
            got = pd.Series(pd.NaT, index=sample.index)
        counts.append(int(got.notna().sum()))
    order = sorted(range(len(formats)), key=lambda i: -counts[i])
    return tuple(formats[i] for i in order)


_FIRST = {False: pd.Timestamp.min, True: pd.Timestamp.min.tz_localize("UTC")}
_LAST = {False: pd.Timestamp.max, True: pd.Timestamp.max.tz_localize("UTC")}


def _coalesce(text: pd.Series, formats: tuple[str, ...], *, utc: bool) -> pd.Series:
    """Each row read by the first of ``formats`` that reads it whole (NaT when none does)."""
    dtype: Any = "datetime64[ns, UTC]" if utc else "datetime64[ns]"
    out: pd.Series = pd.Series(pd.NaT, index=text.index, dtype=dtype)
    todo = (text != "").to_numpy(dtype=bool)
    for fmt in formats:
        if not todo.any():
            break
        try:
            got = pd.to_datetime(text[todo], format=fmt, errors="coerce", utc=utc)
        except (ValueError, TypeError):
            continue
        # A year such as -1 or 9999 parses, at a finer unit than nanoseconds, into an instant
        # no bar has (or a nanosecond can hold): left NaT, its row rejected.
        ok = got.notna() & (got >= _FIRST[utc]) & (got <= _LAST[utc])
        if ok.any():
            out[ok.index[ok]] = got[ok].astype(dtype)
            todo[text.index.get_indexer(ok.index[ok])] = False
    return out


def _parse_zoned(text: pd.Series, fmt: str, *, wall: bool) -> pd.Series:
    """Rows read by a ``--date-format`` pattern with a zone (``%z``, ``%Z``): each row is the
    instant its own offset says (or, with ``wall``, the wall-clock time as written); a row
    without a zone is not in the pattern (NaT, rejected)."""
    if not wall:
        return _coalesce(text, (fmt,), utc=True)

    def clock(stamp: str) -> datetime | None:
        try:
            return datetime.strptime(stamp, fmt).replace(tzinfo=None)  # noqa: DTZ007
        except ValueError:
            return None

    got = pd.to_datetime(pd.Series([clock(t) for t in text], index=text.index, dtype=object),
                         errors="coerce")  # fmt: skip
    out: pd.Series = got.astype("datetime64[ns]")
    return out


def _parse_text(text: pd.Series, tz: str, *, wall: bool, formats: tuple[str, ...]) -> pd.Series:
    """Parse text timestamps, each row with the first of ``formats`` that reads it.

    Stamps with an offset are exact instants; stamps without one are wall-clock times in
    ``tz``. With ``wall`` the naive wall-clock time as written is returned instead (offsets
    dropped), which is what labels a daily bar.
    """
    if len(formats) == 1 and re.search(r"%[zZ]", formats[0]):
        return _parse_zoned(text, formats[0], wall=wall)
    formats = _ranked(text[text != ""].head(_SAMPLE), formats)
    has_offset = text.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
    if wall:
        # Only after a clock time: the "-2024" of 03-04-2024 is no offset.
        bare = text.str.replace(r"\s?(?:Z|[+-]\d{2}:?\d{2})$", "", regex=True)
        return _coalesce(text.where(~has_offset, bare), formats, utc=False)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        out[has_offset] = _coalesce(text[has_offset], formats, utc=True)
    if (~has_offset).any():
        out[~has_offset] = _to_utc(_coalesce(text[~has_offset], formats, utc=False), tz)
    return out


def _day_month_order(text: pd.Series, rows: np.ndarray, origin: str) -> DateOrder | None:
    """The order of the file's ``03/04/2024``-style dates, decided by the whole file.

    A date whose first number is above 12 can only be day first, one whose second is above
    12 only month first. With neither, the order is unknown and no guess is made: a wrong
    guess would move every bar with a day of 12 or less to another month.
    """
    sample = text[text != ""].head(_SAMPLE)
    if not sample.str.extract(_DAY_MONTH_RE)[0].notna().any():
        return None  # no such dates (any further down are rejected, read by no format)
    parts = text.str.extract(_DAY_MONTH_RE)
    dm = parts[0].notna().to_numpy(dtype=bool)
    if not dm.any():
        return None
    first = parts[0].to_numpy()[dm].astype(int)
    second = parts[2].to_numpy()[dm].astype(int)
    where = np.flatnonzero(dm)
    day_first = np.flatnonzero((first > 12) & (second <= 12))
    month_first = np.flatnonzero((second > 12) & (first <= 12))
    hint = "pass --date-format dmy or mdy (rows not in that order are then rejected)"
    if len(day_first) and len(month_first):
        d, m = where[day_first[0]], where[month_first[0]]
        raise BadDataError(
            "DATA_FILE_DATE_CONFLICT",
            f"{origin}: rows disagree on the date order: {len(day_first):,} only read as "
            f"day/month (first row {rows[d]}: {text.iloc[d]!r}), {len(month_first):,} only as "
            f"month/day (first row {rows[m]}: {text.iloc[m]!r}); {hint}",
            details={"origin": origin, "day_first_row": int(rows[d]),
                     "month_first_row": int(rows[m])},
        )  # fmt: skip
    if len(day_first):
        return DateOrder.DMY
    if len(month_first):
        return DateOrder.MDY
    differ = np.flatnonzero(first != second)
    if not len(differ):
        return DateOrder.DMY  # 01/01, 02/02 ...: the same date either way
    i = where[differ[0]]
    a, b = int(first[differ[0]]), int(second[differ[0]])
    raise BadDataError(
        "DATA_FILE_DATE_AMBIGUOUS",
        f"{origin}: dates like {text.iloc[i]!r} (row {rows[i]}) could be {a} {month_name[b]} "
        f"or {month_name[a]} {b}, and no date in the file has a day above 12 to decide; {hint}",
        details={"origin": origin, "row": int(rows[i])},
    )


def _looks_like_epoch(text: pd.Series) -> pd.Series | None:
    numeric = pd.to_numeric(text, errors="coerce")
    filled = text != ""
    if not filled.any() or text.str.fullmatch(r"\d{8}").all():
        return None  # YYYYMMDD is a date, not an epoch
    share = float(numeric[filled].notna().mean())
    if share < 0.5 or float(numeric.abs().median()) < _EPOCH_MIN_S:
        return None
    return numeric


def _parse_ts(
    col: pd.Series,
    time_col: pd.Series | None,
    tz: str,
    *,
    wall: bool = False,
    date_format: str = DateOrder.AUTO,
    where: tuple[str, np.ndarray] = ("", _NO_ROWS),
) -> pd.Series:
    """Timestamps as UTC instants, or (``wall``) as naive wall-clock times in ``tz``.

    ``date_format`` other than ``auto`` reads text with that order or pattern only (no
    epoch numbers); ``where`` is the origin and row numbers named when the file is refused.
    """
    if pd.api.types.is_datetime64_any_dtype(col):
        series = pd.Series(col)
        if wall:
            # An aware column keeps its own zone: the wall clock as written, as for text.
            local = series.dt.tz_localize(None) if series.dt.tz is not None else series
            naive: pd.Series = local.astype("datetime64[ns]")
            return naive
        return _to_utc(series, tz)
    text = col.astype("string").fillna("").str.strip()
    if time_col is not None:
        text = (text + " " + time_col.astype("string").fillna("").str.strip()).str.strip()
    if date_format != DateOrder.AUTO:
        return _parse_text(text, tz, wall=wall, formats=_formats(date_format))
    numeric = _looks_like_epoch(text)
    if numeric is not None:
        epoch = _from_epoch(numeric)
        return epoch.dt.tz_convert(tz).dt.tz_localize(None) if wall else epoch
    origin, rows = where
    order = _day_month_order(text, rows, origin)
    formats = _YMD + (_FAMILIES[order] if order is not None else ())
    return _parse_text(text, tz, wall=wall, formats=formats)


def _to_float(col: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    return pd.to_numeric(col.astype("string").str.strip(), errors="coerce").astype("float64")


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    if frame.empty:
        return np.zeros(0, dtype=bool)
    text = frame.astype("string").fillna("")
    return np.asarray((text.apply(lambda c: c.str.strip()) == "").all(axis=1))


def _raw_text(frame: pd.DataFrame, col: object, idx: np.ndarray) -> list[str]:
    return [str(v) for v in frame[col].to_numpy()[idx]]


def parse_table(
    frame: pd.DataFrame,
    *,
    origin: str,
    timeframe: str,
    tz: str = "UTC",
    price_abs_tolerance: float = 0.0,
    row_offset: int = 1,
    now: pd.Timestamp | None = None,
    date_format: str = DateOrder.AUTO,
    earliest: pd.Timestamp | None = None,
    isolation: IsolatedRows | None = None,
) -> FetchResult:
    """Turn a raw OHLCV table into canonical rows (UTC ``ts``, float prices) and rejects.

    Rows with an unparsable or off-grid timestamp, a non-finite or non-positive price,
    ``high < low``, open/close outside ``[low, high]`` or a negative volume are rejected,
    each with the row number (``row_offset`` is the number of the first data row) and rule; so
    is a row that starts after ``now`` (default: the clock) plus one bar, which no real bar
    can: a date typed wrong, milliseconds read as seconds... (it would move the watermark),
    and one dated before 1970 (it would stretch the DQ grid over decades). With ``isolation``,
    a few rows far from the file's other rows are rejected too (:func:`isolated_rows`).

    ``date_format`` (see :func:`check_date_format`): by default the order of ``03/04/2024``
    style dates is decided from the whole file, and a file that cannot decide it is refused
    (BadDataError); given, it is applied to every row and a row it cannot read is rejected.
    """
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe must be one of {sorted(TIMEFRAMES)}, got {timeframe!r}")
    date_format = check_date_format(date_format)
    row_numbers = np.arange(len(frame)) + row_offset
    blank = _blank_rows(frame)
    if blank.any():
        # Blank lines carry no data; they are dropped but still count for row numbers.
        frame, row_numbers = frame[~blank], row_numbers[~blank]
    frame = frame.reset_index(drop=True)
    mapping = _resolve_columns(frame, origin)
    time_col = frame[mapping["time"]] if "time" in mapping else None
    stamps, where = frame[mapping["ts"]], (origin, row_numbers)
    # A daily bar is labelled by the date written on it, whatever clock time or offset.
    daily = timeframe == "1day"
    ts = _parse_ts(stamps, time_col, tz, wall=daily, date_format=date_format, where=where)
    ts = ts.reset_index(drop=True)
    if daily:
        ts = ts.dt.normalize().dt.tz_localize("UTC")
    unread = (
        "unparsable timestamp"
        if date_format == DateOrder.AUTO
        else f"timestamp not in --date-format {date_format}"
    )
    prices = {c: _to_float(frame[mapping[c]]) for c in ("open", "high", "low", "close")}
    has_volume = "volume" in mapping
    volume = (
        _to_float(frame[mapping["volume"]]) if has_volume else pd.Series(0.0, index=frame.index)
    )
    ts_ns = ts.to_numpy(dtype="datetime64[ns]").view("int64")
    o, h, lo, c = (prices[k].to_numpy() for k in ("open", "high", "low", "close"))
    v = volume.to_numpy()
    # Rules in order; a row is reported under the first rule it breaks.
    rules = [("ts", unread, ts.isna().to_numpy())]
    if not daily and ts.isna().any():
        wall = _parse_ts(stamps, time_col, tz, wall=True, date_format=date_format, where=where)
        rules[:0] = dst_rules(wall.reset_index(drop=True), ts.isna().to_numpy(), tz)
    rules += row_rules(
        timeframe, ts_ns, (o, h, lo, c, v), now=now, tol=price_abs_tolerance, earliest=earliest
    )
    bad = np.zeros(len(frame), dtype=bool)
    rejects: list[Reject] = []

    def apply(field: str, rule: str, mask: np.ndarray) -> None:
        new = mask & ~bad
        if new.any():
            idx = np.flatnonzero(new)
            src_col = mapping["ts"] if field == "ts" else mapping[field]
            raws = _raw_text(frame, src_col, idx)
            rejects.extend(
                Reject(origin, int(row_numbers[i]), field, rule, raw)
                for i, raw in zip(idx, raws, strict=True)
            )
            bad[:] |= new

    with np.errstate(invalid="ignore"):
        for field, rule, mask in rules:
            apply(field, rule, mask)
    if isolation is not None:
        rule = (
            f"isolated: over {isolation.gap_days} days from the file's other bars "
            "(a mistyped date?)"
        )
        apply("ts", rule, isolated_rows(ts_ns, ~bad, isolation))
    good = ~bad
    bars = pd.DataFrame(
        {
            "ts": ts[good].reset_index(drop=True).astype("datetime64[ns, UTC]"),
            "open": o[good],
            "high": h[good],
            "low": lo[good],
            "close": c[good],
            "volume": v[good],
        }
    )
    bars = bars.sort_values("ts", kind="stable").reset_index(drop=True)
    rejects.sort(key=lambda r: r.row)
    return FetchResult(bars=bars, rejects=rejects, source=origin, rows_read=len(frame))
