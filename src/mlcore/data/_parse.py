"""One table parser for every source: raw columns in, canonical OHLCV rows and rejects out."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES
from mlcore.data._provider import FetchResult, Reject
from mlcore.errors import BadDataError

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
# Formats tried on text timestamps, in order of preference when several parse everything.
_TEXT_FORMATS = (
    "ISO8601",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y.%m.%d",
    "%d.%m.%Y %H:%M:%S.%f",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y",
    "%Y%m%d %H%M%S",
    "%Y%m%d",
)
_SAMPLE = 2000


def _norm(name: object) -> str:
    return re.sub(r"[^a-z0-9_]", "", str(name).strip().lower()).replace("_", "") or "unnamed0"


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
            f"{[str(c) for c in frame.columns]}",
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


def _best_format(sample: pd.Series) -> str | None:
    """The single text format that explains the most rows of ``sample``."""
    best: tuple[int, int, str] | None = None
    for fmt in _TEXT_FORMATS:
        try:
            got = pd.to_datetime(sample, format=fmt, errors="coerce", utc=True)
        except (ValueError, TypeError):
            continue
        ok = int(got.notna().sum())
        if ok == 0:
            continue
        # Among formats parsing the same count (e.g. M/D vs D/M), prefer the one in time order.
        monotonic = int((got.dropna().diff().dt.total_seconds() > 0).sum())
        if best is None or (ok, monotonic) > best[:2]:
            best = (ok, monotonic, fmt)
    return None if best is None else best[2]


def _parse_text(text: pd.Series, tz: str, *, wall: bool) -> pd.Series:
    """Parse text timestamps with one format.

    Stamps with an offset are exact instants; stamps without one are wall-clock times in
    ``tz``. With ``wall`` the naive wall-clock time as written is returned instead (offsets
    dropped), which is what labels a daily bar.
    """
    has_offset = text.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
    fmt = _best_format(text[text != ""].head(_SAMPLE))
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if fmt is None:
        return out.dt.tz_localize(None) if wall else out
    if wall:
        stripped = text.str.replace(r"\s?(?:Z|[+-]\d{2}:?\d{2})$", "", regex=True)
        naive = pd.to_datetime(stripped, format=fmt, errors="coerce")
        return pd.Series(naive, index=text.index).astype("datetime64[ns]")
    if has_offset.any():
        aware = pd.to_datetime(text[has_offset], format=fmt, errors="coerce", utc=True)
        out[has_offset] = aware.astype("datetime64[ns, UTC]")
    if (~has_offset).any():
        naive = pd.to_datetime(text[~has_offset], format=fmt, errors="coerce")
        out[~has_offset] = _to_utc(pd.Series(naive).astype("datetime64[ns]"), tz)
    return out


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
    col: pd.Series, time_col: pd.Series | None, tz: str, *, wall: bool = False
) -> pd.Series:
    """Timestamps as UTC instants, or (``wall``) as naive wall-clock times in ``tz``."""
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
    numeric = _looks_like_epoch(text)
    if numeric is not None:
        epoch = _from_epoch(numeric)
        return epoch.dt.tz_convert(tz).dt.tz_localize(None) if wall else epoch
    return _parse_text(text, tz, wall=wall)


def _now_ns(now: pd.Timestamp | None) -> int:
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.as_unit("ns").value)


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
) -> FetchResult:
    """Turn a raw OHLCV table into canonical rows (UTC ``ts``, float prices) and rejects.

    Rows with an unparsable or off-grid timestamp, a non-finite or non-positive price,
    ``high < low``, open/close outside ``[low, high]`` or a negative volume are rejected,
    each with the row number (``row_offset`` is the number of the first data row) and rule; so
    is a row that starts after ``now`` (default: the clock) plus one bar, which no real bar
    can: a date typed wrong, milliseconds read as seconds... (it would move the watermark).
    """
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe must be one of {sorted(TIMEFRAMES)}, got {timeframe!r}")
    row_numbers = np.arange(len(frame)) + row_offset
    blank = _blank_rows(frame)
    if blank.any():
        # Blank lines carry no data; they are dropped but still count for row numbers.
        frame, row_numbers = frame[~blank], row_numbers[~blank]
    frame = frame.reset_index(drop=True)
    mapping = _resolve_columns(frame, origin)
    time_col = frame[mapping["time"]] if "time" in mapping else None
    if timeframe == "1day":
        # A daily bar is labelled by the date written on it, whatever clock time or offset.
        wall = _parse_ts(frame[mapping["ts"]], time_col, tz, wall=True).reset_index(drop=True)
        ts = wall.dt.normalize().dt.tz_localize("UTC")
    else:
        ts = _parse_ts(frame[mapping["ts"]], time_col, tz).reset_index(drop=True)
    prices = {c: _to_float(frame[mapping[c]]) for c in ("open", "high", "low", "close")}
    has_volume = "volume" in mapping
    volume = (
        _to_float(frame[mapping["volume"]]) if has_volume else pd.Series(0.0, index=frame.index)
    )
    step_ns = TIMEFRAMES[timeframe] * 1_000_000_000
    ts_ns = ts.to_numpy(dtype="datetime64[ns]").view("int64")
    o, h, lo, c = (prices[k].to_numpy() for k in ("open", "high", "low", "close"))
    v = volume.to_numpy()
    tol = price_abs_tolerance
    # Rules in order; a row is reported under the first rule it breaks.
    rules: list[tuple[str, str, np.ndarray]] = [
        ("ts", "unparsable timestamp", ts.isna().to_numpy()),
        ("ts", f"timestamp off the {timeframe} grid", (ts_ns % step_ns) != 0),
        ("ts", "timestamp in the future", ts_ns > _now_ns(now) + step_ns),
    ]
    for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
        rules.append((name, "not a finite number", ~np.isfinite(arr)))
    for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
        rules.append((name, "non-positive price", arr <= 0))
    rules.append(("high", "high < low", h < lo))
    rules.append(("open", "open outside [low, high]", (o > h + tol) | (o < lo - tol)))
    rules.append(("close", "close outside [low, high]", (c > h + tol) | (c < lo - tol)))
    rules.append(("volume", "volume negative or not finite", ~np.isfinite(v) | (v < 0)))
    bad = np.zeros(len(frame), dtype=bool)
    rejects: list[Reject] = []
    with np.errstate(invalid="ignore"):
        for field, rule, mask in rules:
            new = mask & ~bad
            if new.any():
                idx = np.flatnonzero(new)
                src_col = mapping["ts"] if field == "ts" else mapping[field]
                raws = _raw_text(frame, src_col, idx)
                rejects.extend(
                    Reject(origin, int(row_numbers[i]), field, rule, raw)
                    for i, raw in zip(idx, raws, strict=True)
                )
                bad |= new
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
