"""The raw layer: every delivery merged by timestamp (a re-delivery replaces the stored
value), checked again against today's row rules, and the watermark read back."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlcore._files import read_regular_file
from mlcore.config import TIMEFRAMES, AppConfig
from mlcore.data._atomic import FaultHook
from mlcore.data._lock import symbol_lock
from mlcore.data._rules import now_ns, row_rules
from mlcore.data._store import (
    CONFLICTS_FILE,
    PRICE_COLS,
    RAW_FILE,
    RAW_META_FILE,
    PartitionStore,
    bars_hash,
    json_bytes,
    month_groups,
    month_key,
    to_parquet_bytes,
)

log = logging.getLogger("mlcore.data")
RAW_COLS = ["ts", *PRICE_COLS, "conflict"]
META_SCHEMA_VERSION = 1
_EMPTY = np.array([], dtype=np.int64)


@dataclass
class MergeCounts:
    """What merging a delivery into the raw layer did."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    replaced: int = 0
    removed_months: list[str] = field(default_factory=list)


def _normalize_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw rows in one exact layout (column order, dtypes, sorted), so bytes compare equal."""
    out = frame[RAW_COLS]
    if not out["ts"].is_monotonic_increasing:
        out = out.sort_values("ts", kind="stable")
    out = out.reset_index(drop=True)
    if str(out["ts"].dtype) != "datetime64[ns, UTC]":
        out["ts"] = out["ts"].astype("datetime64[ns, UTC]")
    for col in PRICE_COLS:
        if out[col].dtype != np.float64:
            out[col] = out[col].astype("float64")
    if out["conflict"].dtype != np.bool_:
        out["conflict"] = out["conflict"].astype(bool)
    return out


def _merge_month(old: pd.DataFrame | None, new: pd.DataFrame, counts: MergeCounts) -> pd.DataFrame:
    """New deliveries replace stored bars at the same timestamp; other stored bars stay."""
    new = _normalize_raw(new)
    if old is None or old.empty:
        counts.new += len(new)
        return new
    old = _normalize_raw(old)
    old_ts = pd.DatetimeIndex(old["ts"]).as_unit("ns").asi8
    new_ts = pd.DatetimeIndex(new["ts"]).as_unit("ns").asi8
    pos = np.minimum(np.searchsorted(old_ts, new_ts), len(old_ts) - 1)
    matched = old_ts[pos] == new_ts
    same = matched.copy()
    for col in (*PRICE_COLS, "conflict"):
        same &= old[col].to_numpy()[pos] == new[col].to_numpy()
    counts.unchanged += int(same.sum())
    counts.updated += int((matched & ~same).sum())
    counts.new += int((~matched).sum())
    keep_old = np.ones(len(old_ts), dtype=bool)
    keep_old[pos[matched]] = False
    return _normalize_raw(pd.concat([old[keep_old], new], ignore_index=True))


def _merge_conflicts(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is not None and not old.empty:
        new = pd.concat([old, new], ignore_index=True)
    new = new.drop_duplicates(subset=["ts", *PRICE_COLS]).sort_values(["ts", *PRICE_COLS])
    return new.reset_index(drop=True)


def _store_raw_month(
    store: PartitionStore,
    where: tuple[str, str, str],
    merged: pd.DataFrame,
    conflicts: pd.DataFrame,
    force: bool,
    fault: FaultHook | None,
) -> bool:
    """Write one raw month unless its manifest is unchanged; remove it when left empty."""
    timeframe, symbol, month = where
    if merged.empty and conflicts.empty:
        existed = store.partition_dir(timeframe, symbol, month).exists()
        store.remove(timeframe, symbol, month)
        return existed
    manifest = {
        "schema_version": META_SCHEMA_VERSION,
        "rows": len(merged),
        "raw_hash": bars_hash(merged, ("conflict",)),
        "conflicts_hash": bars_hash(conflicts, ("reason",)),
    }

    def build() -> dict[str, bytes]:
        files = {RAW_FILE: to_parquet_bytes(merged)}
        if len(conflicts):
            files[CONFLICTS_FILE] = to_parquet_bytes(conflicts)
        return files

    return store.write_unless_same(
        timeframe, symbol, month, (RAW_META_FILE, json_bytes(manifest)), build,
        force=force, fault=fault, required=(RAW_FILE,),
    )  # fmt: skip


Span = tuple[pd.Timestamp, pd.Timestamp]
# A file is the truth only where it is dense: a gap longer than this (more than a long
# holiday) splits its span, so one stray far-off row never stands for the years between.
SPAN_MAX_GAP = pd.Timedelta(days=7)


def file_spans(ts: pd.Series, max_gap: pd.Timedelta = SPAN_MAX_GAP) -> list[Span]:
    """The runs of sorted ``ts`` whose consecutive bars are at most ``max_gap`` apart."""
    if ts.empty:
        return []
    idx = pd.DatetimeIndex(ts)
    breaks = np.flatnonzero(np.diff(idx.asi8) > max_gap.value)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(idx) - 1]])
    return [(idx[a], idx[b]) for a, b in zip(starts, ends, strict=True)]


def _outside_span(
    frame: pd.DataFrame | None, spans: list[Span], keep: pd.Series
) -> tuple[pd.DataFrame | None, int]:
    """Stored rows without those inside ``spans`` whose timestamp is not in ``keep``."""
    if frame is None or frame.empty:
        return frame, 0
    inside = np.zeros(len(frame), dtype=bool)
    for lo, hi in spans:
        inside |= ((frame["ts"] >= lo) & (frame["ts"] <= hi)).to_numpy()
    drop = inside & ~frame["ts"].isin(keep).to_numpy()
    return frame[~drop].reset_index(drop=True), int(drop.sum())


def _span_months(store: PartitionStore, timeframe: str, symbol: str, spans: list[Span]) -> set[str]:
    """Stored months that one of ``spans`` reaches into."""
    stored = store.months(timeframe, symbol)
    out: set[str] = set()
    for span in spans:
        first, last = (str(m) for m in month_key(pd.DatetimeIndex(list(span))))
        out |= {m for m in stored if first <= m <= last}
    return out


def write_raw(
    store: PartitionStore,
    timeframe: str,
    symbol: str,
    incoming: tuple[pd.DataFrame, pd.DataFrame],
    force: bool,
    fault: FaultHook | None,
    spans: list[Span] | None = None,
) -> tuple[list[str], MergeCounts, dict[str, tuple[pd.DataFrame, pd.DataFrame]]]:
    """Merge incoming rows into the raw months they touch; return those months in memory.

    With ``spans`` (a file's dense runs, :func:`file_spans`) the delivery is the truth in
    them: stored rows inside that it does not hold go, as do earlier conflict versions there.
    """
    unique, superseded = incoming
    counts = MergeCounts()
    written: list[str] = []
    touched: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    months = month_groups(unique["ts"])
    sup_months = month_groups(superseded["ts"]) if len(superseded) else {}
    covered = _span_months(store, timeframe, symbol, spans) if spans else set()
    for month in sorted(set(months) | set(sup_months) | covered):
        new = unique.iloc[months.get(month, _EMPTY)]
        old = store.read_file(timeframe, symbol, month, RAW_FILE)
        old_conf = store.read_file(timeframe, symbol, month, CONFLICTS_FILE)
        if spans:
            old, gone = _outside_span(old, spans, new["ts"])
            counts.replaced += gone
            old_conf, _ = _outside_span(old_conf, spans, pd.Series([], dtype=new["ts"].dtype))
        merged = _merge_month(old, new, counts)
        conf_new = superseded.iloc[sup_months.get(month, _EMPTY)][["ts", *PRICE_COLS, "reason"]]
        conflicts = _merge_conflicts(old_conf, conf_new)
        touched[month] = (merged, conflicts)
        where = (timeframe, symbol, month)
        if _store_raw_month(store, where, merged, conflicts, force, fault):
            written.append(month)
            if merged.empty and conflicts.empty:
                counts.removed_months.append(month)
    return written, counts, touched


def purge_raw(
    store: PartitionStore,
    timeframe: str,
    symbol: str,
    touched: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    checks: tuple[pd.Timestamp | None, float, pd.Timestamp | None],
    fault: FaultHook | None,
) -> tuple[dict[str, int], list[str]]:
    """Apply today's row rules to every stored raw row; drop the rows that break one.

    An older version let in rows these rules now reject (a bar dated 2200 moved the watermark
    and quarantined every month up to it); they go at the next ingest. Every month read is
    left in ``touched``. Returns (purged rows by rule, months removed as empty).
    """
    now, tol, earliest = checks
    purged: dict[str, int] = {}
    removed: list[str] = []
    for month in store.months(timeframe, symbol):
        if month not in touched:
            raw = store.read_file(timeframe, symbol, month, RAW_FILE)
            conf = store.read_file(timeframe, symbol, month, CONFLICTS_FILE)
            touched[month] = (
                _normalize_raw(raw) if raw is not None else pd.DataFrame(columns=RAW_COLS),
                conf if conf is not None else pd.DataFrame(columns=["ts", *PRICE_COLS, "reason"]),
            )
        raw, conf = touched[month]
        if raw.empty:
            continue
        ts_ns = pd.DatetimeIndex(raw["ts"]).as_unit("ns").asi8
        ohlcv = tuple(raw[c].to_numpy(dtype="float64") for c in PRICE_COLS)
        bad = np.zeros(len(raw), dtype=bool)
        for _field, rule, mask in row_rules(
            timeframe, ts_ns, ohlcv, now=now, tol=tol, earliest=earliest
        ):
            hit = mask & ~bad
            if hit.any():
                purged[rule] = purged.get(rule, 0) + int(hit.sum())
                bad |= hit
        if not bad.any():
            continue
        keep = raw[~bad].reset_index(drop=True)
        if len(conf):
            conf = conf[conf["ts"].isin(keep["ts"])].reset_index(drop=True)
        touched[month] = (keep, conf)
        _store_raw_month(store, (timeframe, symbol, month), keep, conf, False, fault)
        if keep.empty and conf.empty:
            removed.append(month)
    return purged, removed


def read_raw_history(
    store: PartitionStore,
    timeframe: str,
    symbol: str,
    touched: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    raws, confs = [], []
    raw: pd.DataFrame | None
    conf: pd.DataFrame | None
    for month in store.months(timeframe, symbol):
        if month in touched:
            raw, conf = touched[month]
        else:
            raw = store.read_file(timeframe, symbol, month, RAW_FILE)
            conf = store.read_file(timeframe, symbol, month, CONFLICTS_FILE)
        if raw is not None and len(raw):
            raws.append(raw)
        if conf is not None and len(conf):
            confs.append(conf)
    raw_all = pd.concat(raws, ignore_index=True) if raws else pd.DataFrame(columns=RAW_COLS)
    conf_all = (
        pd.concat(confs, ignore_index=True)
        if confs
        else pd.DataFrame(columns=["ts", *PRICE_COLS, "reason"])
    )
    return raw_all.sort_values("ts", kind="stable").reset_index(drop=True), conf_all


def read_watermark(
    cfg: AppConfig, symbol: str, timeframe: str, now: pd.Timestamp | None = None
) -> pd.Timestamp | None:
    """Last bar time stored for a symbol, or None before the first ingest.

    A watermark after ``now`` (default: the clock) plus one bar was written by an ingest that
    let a row from the future in: it is damaged, and the last stored bar up to then is
    returned instead (the next ingest purges that row and writes the watermark anew).
    """
    store = PartitionStore(cfg.paths.raw)
    path = store.symbol_dir(timeframe, symbol) / "_watermark.json"
    if not path.exists():
        return None
    try:
        data = json.loads(read_regular_file(path, 1 << 16))
        mark = pd.Timestamp(data["last_ts"]) if data.get("last_ts") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        mark = pd.Timestamp.max.tz_localize("UTC")  # unreadable: derived from the data
    limit = pd.Timestamp(now_ns(now), tz="UTC") + pd.Timedelta(seconds=TIMEFRAMES[timeframe])
    if mark is None or mark <= limit:
        return mark
    log.warning("watermark %s of %s %s is after now: taken from the stored bars", mark,
                symbol, timeframe)  # fmt: skip
    with symbol_lock(cfg.paths.raw, symbol, timeframe):  # months() recovers: not under a writer
        for month in reversed(store.months(timeframe, symbol)):
            raw = store.read_file(timeframe, symbol, month, RAW_FILE)
            if raw is not None and (raw["ts"] <= limit).any():
                last: pd.Timestamp = raw.loc[raw["ts"] <= limit, "ts"].max()
                return last
    return None
