"""The rules a parsed bar row must pass (pure functions over arrays, no I/O).

:func:`row_rules` are per-row and are applied again to stored rows at every ingest, so rows an
older version let in go. :func:`isolated_rows` looks at a file's rows together: a few bars far
from all the others are a mistyped date (2014 for 2024), and kept they would stretch the
expected-bar grid, and the quarantined months, over the years between. It is applied to each
file or response only, never to the stored history, where a lone recent bar after an outage is
real.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES, IsolatedRows

EARLIEST_NS = 0  # 1970-01-01 UTC: the first bar time a row may have
# More units than any market trades in one bar (the busiest tokens trade ~1e13 a day); past it
# a volume is a feed or scale error, and 20-bar sums of volume × price (the VWAP, the volume
# ratio) overflow to inf long before 1e308. Ingest and the live parser share it.
MAX_VOLUME = 1e15
_DAY_NS = 86_400 * 1_000_000_000


def now_ns(now: pd.Timestamp | None) -> int:
    """``now`` (default: the clock) in UTC nanoseconds."""
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.as_unit("ns").value)


def row_rules(
    timeframe: str,
    ts_ns: np.ndarray,
    ohlcv: tuple[np.ndarray, ...],
    *,
    now: pd.Timestamp | None = None,
    tol: float = 0.0,
    earliest: pd.Timestamp | None = None,
) -> list[tuple[str, str, np.ndarray]]:
    """(field, rule, mask of the rows breaking it) for every rule a parsed row must pass, in
    order; ingest applies them again to the stored rows, so rows an older version let in go."""
    o, h, lo, c, v = ohlcv
    step_ns = TIMEFRAMES[timeframe] * 1_000_000_000
    first = pd.Timestamp(EARLIEST_NS, tz="UTC") if earliest is None else earliest
    rules: list[tuple[str, str, np.ndarray]] = [
        ("ts", f"timestamp off the {timeframe} grid", (ts_ns % step_ns) != 0),
        ("ts", "timestamp in the future", ts_ns > now_ns(now) + step_ns),
        # No market bar predates 1970 (or pipeline_policy earliest_bar): a typo, an epoch misread.
        ("ts", f"timestamp before {first:%Y-%m-%d}", ts_ns < first.value),
    ]
    with np.errstate(invalid="ignore"):
        for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
            rules.append((name, "not a finite number", ~np.isfinite(arr)))
        for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
            rules.append((name, "non-positive price", arr <= 0))
        rules.append(("high", "high < low", h < lo))
        rules.append(("open", "open outside [low, high]", (o > h + tol) | (o < lo - tol)))
        rules.append(("close", "close outside [low, high]", (c > h + tol) | (c < lo - tol)))
        rules.append(("volume", "volume negative or not finite", ~np.isfinite(v) | (v < 0)))
        rules.append(("volume", f"volume over {MAX_VOLUME:g}", v > MAX_VOLUME))
    return rules


def dst_rules(wall: pd.Series, unread: np.ndarray, tz: str) -> list[tuple[str, str, np.ndarray]]:
    """Rules naming the unread rows whose wall-clock time ``tz`` skips (spring-forward) or
    passes twice (fall-back): the time is well written, the instant cannot be told."""
    clock = wall.where(pd.Series(unread, index=wall.index))
    written = clock.notna().to_numpy()
    if not written.any():
        return []
    twice = clock.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward").isna()
    first = np.ones(len(clock), dtype=bool)
    skipped = clock.dt.tz_localize(tz, ambiguous=first, nonexistent="NaT").isna()
    return [
        ("ts", f"ambiguous local time (DST fall-back) in {tz}", twice.to_numpy() & written),
        (
            "ts",
            f"nonexistent local time (DST spring-forward) in {tz}",
            skipped.to_numpy() & written,
        ),
    ]


def isolated_rows(ts_ns: np.ndarray, valid: np.ndarray, policy: IsolatedRows) -> np.ndarray:
    """Mask of the ``valid`` rows in a run of at most ``policy.max_bars`` bars that lies more
    than ``policy.gap_days`` days from every other valid row (a file's edges count as far),
    when the file also has a longer run: the longer run is the data, the short one a typo.
    A file of only short runs is left alone (nothing tells which run is the data)."""
    out = np.zeros(len(ts_ns), dtype=bool)
    idx = np.flatnonzero(valid)
    if len(idx) <= policy.max_bars:
        return out
    order = idx[np.argsort(ts_ns[idx], kind="stable")]
    stamps = ts_ns[order]
    breaks = np.flatnonzero(np.diff(stamps) > policy.gap_days * _DAY_NS) + 1
    if len(breaks) == 0:
        return out
    starts = np.concatenate(([0], breaks))
    sizes = np.diff(np.concatenate((starts, [len(stamps)])))
    if sizes.max() <= policy.max_bars:
        return out
    run_of = np.repeat(np.arange(len(sizes)), sizes)
    out[order[sizes[run_of] <= policy.max_bars]] = True
    return out


#: Fewest bars before their spacing is read as a hint (a short file says little).
SPACING_MIN_BARS = 10


def spacing_hint(ts: pd.Series, timeframe: str) -> str:
    """A hint when a file's bars are spaced as another timeframe's (daily bars ingested as 1h
    quarantine every month as gaps, with nothing saying why): the median gap between
    consecutive bars is at least twice ``timeframe`` and within 25 % of a known timeframe.
    Empty when the spacing fits, or when the file is too short to tell."""
    if len(ts) < SPACING_MIN_BARS:
        return ""
    gaps = np.diff(np.sort(ts.to_numpy("datetime64[ns]").astype(np.int64))) / 1e9
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return ""
    median = float(np.median(gaps))
    if median < 2 * TIMEFRAMES[timeframe]:
        return ""
    near = [tf for tf, s in TIMEFRAMES.items() if abs(median - s) <= 0.25 * s]
    if not near:
        return ""
    return (
        f"the bars are a median {median / 3600:g} h apart, not {timeframe}: were they "
        f"{near[0]} bars (`--timeframe {near[0]}`)?"
    )
