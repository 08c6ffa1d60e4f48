"""One table parser for every source: raw columns in, canonical OHLCV rows and rejects out."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES
from mlcore.data._provider import FetchResult, Reject
from mlcore.errors import FatalError

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
        "unnamed0",
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
    missing = [c for c in ("ts", "open", "high", "low", "close") if c not in mapping]
    if missing:
        raise FatalError(
            "DATA_FILE_SCHEMA",
            f"{origin}: no column for {', '.join(missing)}; columns found: "
            f"{[str(c) for c in frame.columns]}",
            details={"origin": origin, "missing": missing},
        )
    return mapping


def _epoch_unit(values: pd.Series) -> str:
    top = float(np.nanmax(np.abs(values.to_numpy(dtype="float64"))))
    if top < 1e11:
        return "s"
    if top < 1e14:
        return "ms"
    if top < 1e17:
        return "us"
    return "ns"


def _to_utc(parsed: pd.Series, tz: str) -> pd.Series:
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    out: pd.Series = parsed.dt.tz_convert("UTC")
    return out


def _parse_text(text: pd.Series, tz: str) -> pd.Series:
    """Parse text timestamps with the single format that explains the most rows."""
    sample = text[text != ""].head(_SAMPLE)
    best: tuple[int, int, str] | None = None
    for fmt in _TEXT_FORMATS:
        try:
            got = pd.to_datetime(sample, format=fmt, errors="coerce", utc=False)
        except (ValueError, TypeError):
            continue
        ok = int(got.notna().sum())
        if ok == 0:
            continue
        # Among formats parsing the same count (e.g. M/D vs D/M), prefer the one in time order.
        monotonic = int((got.dropna().diff().dt.total_seconds() > 0).sum())
        score = (ok, monotonic, fmt)
        if best is None or score[:2] > best[:2]:
            best = score
    if best is None:
        return pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    try:
        parsed = pd.to_datetime(text, format=best[2], errors="coerce")
    except (ValueError, TypeError):
        # Mixed offsets / naive values: parse one by one, each to UTC.
        parsed = pd.to_datetime(text, format=best[2], errors="coerce", utc=True)
    if parsed.dtype == object:
        parsed = pd.to_datetime(text, format=best[2], errors="coerce", utc=True)
    return _to_utc(parsed, tz)


def _parse_ts(col: pd.Series, time_col: pd.Series | None, tz: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        return _to_utc(pd.Series(col), tz)
    text = col.astype("string").fillna("").str.strip()
    if time_col is not None:
        text = (text + " " + time_col.astype("string").fillna("").str.strip()).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if len(text) and numeric.notna().mean() > 0.99 and not text.str.fullmatch(r"\d{8}").all():
        unit = _epoch_unit(numeric)
        epoch: pd.Series = pd.to_datetime(numeric, unit=unit, utc=True, errors="coerce")  # type: ignore[call-overload]
        return epoch
    return _parse_text(text, tz)


def _to_float(col: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    return pd.to_numeric(col.astype("string").str.strip(), errors="coerce").astype("float64")


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
) -> FetchResult:
    """Turn a raw OHLCV table into canonical rows (UTC ``ts``, float prices) and rejects.

    Rows with an unparsable or off-grid timestamp, a non-finite or non-positive price,
    ``high < low``, open/close outside ``[low, high]`` or a negative volume are rejected,
    each with the row number (``row_offset`` is the number of the first data row) and rule.
    """
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe must be one of {sorted(TIMEFRAMES)}, got {timeframe!r}")
    frame = frame.reset_index(drop=True)
    mapping = _resolve_columns(frame, origin)
    time_col = frame[mapping["time"]] if "time" in mapping else None
    ts = _parse_ts(frame[mapping["ts"]], time_col, tz).reset_index(drop=True)
    if timeframe == "1day":
        # A daily bar is labelled by its trading date, whatever clock time the vendor stamped.
        local = ts.dt.tz_convert(tz) if tz != "UTC" else ts
        ts = pd.to_datetime(
            local.dt.strftime("%Y-%m-%d"), format="%Y-%m-%d", errors="coerce", utc=True
        )
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
                    Reject(origin, int(i) + row_offset, field, rule, raw)
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
