"""Ingestion: provider rows -> raw layer (merge, conflicts) -> DQ -> canonical partitions."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES, AppConfig, CalendarSpec
from mlcore.data._atomic import FaultHook
from mlcore.data._calendar import expected_grid
from mlcore.data._dq import DQResult, Gap, run_dq
from mlcore.data._provider import FetchResult, Reject
from mlcore.data._store import (
    BARS_FILE,
    CONFLICTS_FILE,
    EXCLUDED_FILE,
    META_FILE,
    PRICE_COLS,
    QUARANTINE_FILE,
    RAW_FILE,
    PartitionStore,
    bars_hash,
    json_bytes,
    month_key,
    to_parquet_bytes,
)
from mlcore.errors import FatalError

_RAW_COLS = ["ts", *PRICE_COLS, "conflict"]
_META_SCHEMA_VERSION = 1


@dataclass
class IngestReport:
    """What one ingest read, wrote and flagged."""

    run_id: str
    symbol: str
    timeframe: str
    source: str
    rows_read: int
    rows_rejected: int
    rejects_by_rule: dict[str, int]
    duplicates_dropped: int
    conflicting_rows: int
    new_bars: int
    updated_bars: int
    unchanged_bars: int
    raw_partitions_written: list[str]
    canonical_partitions_written: list[str]
    canonical_partitions_unchanged: int
    quarantined: dict[str, list[str]]
    flags: dict[str, int]
    missing_bars: int
    off_calendar_bars: int
    last_ts: str | None
    rejects: list[dict[str, Any]] = field(default_factory=list)
    report_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-able data."""
        return asdict(self)


def normalize_symbol(symbol: str, known: list[str]) -> str:
    """Normalize ``xauusd``, ``XAU-USD``, ``xau_usd`` ... to ``XAU/USD`` (as listed in universe)."""
    s = symbol.strip().upper().replace("-", "/").replace("_", "/").replace(" ", "")
    if s in known:
        return s
    compact = {k.replace("/", ""): k for k in known}
    return compact.get(s.replace("/", ""), s)


def _dedupe_incoming(bars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Drop exact repeats; for a timestamp delivered with different values keep the last.

    Returns (unique bars with a ``conflict`` column, the superseded rows, repeats dropped).
    """
    bars = bars.sort_values("ts", kind="stable").reset_index(drop=True)
    exact = bars.duplicated(subset=["ts", *PRICE_COLS], keep="last")
    repeats = int(exact.sum())
    bars = bars[~exact].reset_index(drop=True)
    dup_ts = bars["ts"].duplicated(keep=False).to_numpy()
    last = ~bars["ts"].duplicated(keep="last").to_numpy()
    superseded = bars[dup_ts & ~last].copy()
    superseded["reason"] = "conflict"
    unique = bars[last].copy()
    unique["conflict"] = unique["ts"].isin(superseded["ts"]).to_numpy()
    return unique.reset_index(drop=True), superseded.reset_index(drop=True), repeats


@dataclass
class _MergeCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def _normalize_raw(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[_RAW_COLS].sort_values("ts", kind="stable").reset_index(drop=True)
    out["ts"] = out["ts"].astype("datetime64[ns, UTC]")
    for col in PRICE_COLS:
        out[col] = out[col].astype("float64")
    out["conflict"] = out["conflict"].astype(bool)
    return out


def _merge_month(old: pd.DataFrame | None, new: pd.DataFrame, counts: _MergeCounts) -> pd.DataFrame:
    if old is None or old.empty:
        counts.new += len(new)
        return _normalize_raw(new)
    joined = old.merge(new, on="ts", how="outer", suffixes=("_old", ""), indicator=True)
    both = joined["_merge"] == "both"
    same = np.ones(len(joined), dtype=bool)
    for col in (*PRICE_COLS, "conflict"):
        same &= joined[f"{col}_old"].to_numpy() == joined[col].to_numpy()
    counts.updated += int((both & ~same).sum())
    counts.unchanged += int((both & same).sum())
    counts.new += int((joined["_merge"] == "right_only").sum())
    left_only = (joined["_merge"] == "left_only").to_numpy()
    for col in (*PRICE_COLS, "conflict"):
        joined.loc[left_only, col] = joined.loc[left_only, f"{col}_old"]
    return _normalize_raw(joined)


def _merge_conflicts(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is not None and not old.empty:
        new = pd.concat([old, new], ignore_index=True)
    new = new.drop_duplicates(subset=["ts", *PRICE_COLS]).sort_values(["ts", *PRICE_COLS])
    return new.reset_index(drop=True)


def _write_raw(
    store: PartitionStore,
    timeframe: str,
    symbol: str,
    unique: pd.DataFrame,
    superseded: pd.DataFrame,
    fault: FaultHook | None,
) -> tuple[list[str], _MergeCounts]:
    counts = _MergeCounts()
    written: list[str] = []
    months = month_key(unique["ts"])
    sup_months = month_key(superseded["ts"]) if len(superseded) else np.array([], dtype=object)
    for month in sorted(set(months) | set(sup_months)):
        new = unique[months == month]
        old = store.read_file(timeframe, symbol, month, RAW_FILE)
        merged = _merge_month(old, new, counts)
        files = {RAW_FILE: to_parquet_bytes(merged)}
        old_conf = store.read_file(timeframe, symbol, month, CONFLICTS_FILE)
        conf_new = superseded[sup_months == month][["ts", *PRICE_COLS, "reason"]]
        conflicts = _merge_conflicts(old_conf, conf_new)
        if len(conflicts):
            files[CONFLICTS_FILE] = to_parquet_bytes(conflicts)
        if store.write(timeframe, symbol, month, files, fault):
            written.append(month)
    return written, counts


def _read_raw_history(
    store: PartitionStore, timeframe: str, symbol: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    raws, confs = [], []
    for month in store.months(timeframe, symbol):
        raw = store.read_file(timeframe, symbol, month, RAW_FILE)
        if raw is not None:
            raws.append(raw)
        conf = store.read_file(timeframe, symbol, month, CONFLICTS_FILE)
        if conf is not None:
            confs.append(conf)
    raw_all = pd.concat(raws, ignore_index=True) if raws else pd.DataFrame(columns=_RAW_COLS)
    conf_all = (
        pd.concat(confs, ignore_index=True)
        if confs
        else pd.DataFrame(columns=["ts", *PRICE_COLS, "reason"])
    )
    return raw_all.sort_values("ts", kind="stable").reset_index(drop=True), conf_all


def _quarantine_for(month: str, gaps: list[Gap], cfg: AppConfig) -> dict[str, Any] | None:
    th = cfg.pipeline.dq_thresholds
    hits = [g for g in gaps if not g.filled and _gap_touches(g, month)]
    if not hits:
        return None
    worst = max(hits, key=lambda g: g.n_bars)
    return {
        "reason": "missing_run_exceeds_max_fill_bars",
        "detail": f"{len(hits)} unfilled gap(s); longest {worst.n_bars} bars "
        f"from {worst.start.isoformat()} to {worst.end.isoformat()}",
        "threshold": {"max_fill_bars": th.max_fill_bars},
        "period": {
            "start": min(g.start for g in hits).isoformat(),
            "end": max(g.end for g in hits).isoformat(),
        },
        "gaps": [
            {"start": g.start.isoformat(), "end": g.end.isoformat(), "n_bars": g.n_bars}
            for g in hits
        ],
        "owner": cfg.pipeline.quarantine_owner,
    }


def _gap_touches(gap: Gap, month: str) -> bool:
    return gap.start.strftime("%Y-%m") <= month <= gap.end.strftime("%Y-%m")


def _month_files(
    month: str,
    symbol: str,
    timeframe: str,
    dq: DQResult,
    conflicts: pd.DataFrame,
    cfg: AppConfig,
) -> tuple[dict[str, bytes], dict[str, Any] | None]:
    bars = dq.bars[month_key(dq.bars["ts"]) == month].reset_index(drop=True)
    flags = bars["quality_flag"].astype(str)
    missing_in_month = int((month_key(dq.missing_ts) == month).sum()) if len(dq.missing_ts) else 0
    off_cal = int((month_key(dq.off_calendar_ts) == month).sum()) if len(dq.off_calendar_ts) else 0
    out = bars.copy()
    out.insert(1, "symbol", symbol)
    out.insert(2, "timeframe", timeframe)
    quarantine = _quarantine_for(month, dq.gaps, cfg)
    meta = {
        "schema_version": _META_SCHEMA_VERSION,
        "timeframe": timeframe,
        "symbol": symbol,
        "month": month,
        "counts": {
            "bars_written": len(bars),
            "missing_gaps": missing_in_month,
            "filled_bars": int((flags == "filled").sum()),
            "outlier_bars": int((flags == "outlier").sum()),
            "spike_flags": int((flags == "spike").sum()),
            "conflict_bars": int((flags == "conflict").sum()),
            "off_calendar_bars": off_cal,
        },
        "first_ts": bars["ts"].iloc[0].isoformat() if len(bars) else None,
        "last_ts": bars["ts"].iloc[-1].isoformat() if len(bars) else None,
        "data_hash": bars_hash(bars),
        "quarantined": quarantine is not None,
        "dq_thresholds": cfg.pipeline.dq_thresholds.model_dump(),
    }
    files = {BARS_FILE: to_parquet_bytes(out), META_FILE: json_bytes(meta)}
    exc = dq.excluded[month_key(dq.excluded["ts"]) == month] if len(dq.excluded) else dq.excluded
    conf = conflicts[month_key(conflicts["ts"]) == month] if len(conflicts) else conflicts
    excluded = (
        pd.concat([x for x in (exc, conf) if len(x)], ignore_index=True)
        if len(exc) or len(conf)
        else None
    )
    if excluded is not None:
        excluded = excluded.sort_values(["ts", "reason"], kind="stable").reset_index(drop=True)
        files[EXCLUDED_FILE] = to_parquet_bytes(excluded[["ts", *PRICE_COLS, "reason"]])
    if quarantine is not None:
        files[QUARANTINE_FILE] = json_bytes(quarantine)
    return files, quarantine


def _write_atomic_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(json_bytes(obj))
    os.replace(tmp, path)


def resolve_calendar(cfg: AppConfig, symbol: str, calendar: str | None) -> CalendarSpec:
    """The trading calendar of ``symbol``: from ``--calendar`` or universe.yaml."""
    name = calendar
    if name is None:
        inst = cfg.universe.instruments.get(symbol)
        if inst is None:
            raise FatalError(
                "DATA_SYMBOL_UNKNOWN",
                f"symbol {symbol!r} is not in universe.yaml instruments "
                f"({sorted(cfg.universe.instruments)}); add it or pass --calendar",
                details={"symbol": symbol},
            )
        name = inst.calendar
    if name not in cfg.universe.calendars:
        raise FatalError(
            "DATA_CALENDAR_UNKNOWN",
            f"calendar {name!r} is not defined in universe.yaml ({sorted(cfg.universe.calendars)})",
        )
    return cfg.universe.calendars[name]


def _rebuild_canonical(
    cfg: AppConfig, symbol: str, timeframe: str, cal: CalendarSpec, fault: FaultHook | None
) -> tuple[DQResult, list[str], int, dict[str, list[str]]]:
    raw_store = PartitionStore(cfg.paths.raw)
    canon = PartitionStore(cfg.paths.canonical)
    raw, conflicts = _read_raw_history(raw_store, timeframe, symbol)
    if raw.empty:
        grid = pd.DatetimeIndex([], tz="UTC")
    else:
        grid = expected_grid(cal, timeframe, raw["ts"].iloc[0], raw["ts"].iloc[-1])
    dq = run_dq(raw, grid, cfg.pipeline.dq_thresholds)
    months = set(month_key(dq.bars["ts"])) | set(month_key(dq.missing_ts))
    written: list[str] = []
    unchanged = 0
    quarantined: dict[str, list[str]] = {}
    for month in sorted(months):
        files, q = _month_files(month, symbol, timeframe, dq, conflicts, cfg)
        if q is not None:
            quarantined[month] = [q["reason"], q["detail"]]
        if canon.write(timeframe, symbol, month, files, fault):
            written.append(month)
        else:
            unchanged += 1
    return dq, written, unchanged, quarantined


def ingest(
    cfg: AppConfig,
    fetched: FetchResult,
    symbol: str,
    timeframe: str,
    *,
    calendar: str | None = None,
    fault: FaultHook | None = None,
) -> IngestReport:
    """Store fetched bars: merge into the raw layer, run DQ, rewrite changed canonical months.

    Idempotent: ingesting the same rows again writes nothing.
    """
    if timeframe not in TIMEFRAMES or timeframe not in cfg.pipeline.timeframe_allowed:
        raise FatalError(
            "DATA_TIMEFRAME_INVALID",
            f"timeframe {timeframe!r} is not allowed (pipeline_policy.timeframe_allowed: "
            f"{cfg.pipeline.timeframe_allowed})",
        )
    cal = resolve_calendar(cfg, symbol, calendar)
    raw_store = PartitionStore(cfg.paths.raw)
    unique, superseded, repeats = _dedupe_incoming(fetched.bars)
    raw_written, counts = _write_raw(raw_store, timeframe, symbol, unique, superseded, fault)
    dq, written, unchanged, quarantined = _rebuild_canonical(cfg, symbol, timeframe, cal, fault)
    last_ts = dq.bars["ts"].iloc[-1].isoformat() if len(dq.bars) else None
    _write_atomic_json(
        raw_store.symbol_dir(timeframe, symbol) / "_watermark.json",
        {"symbol": symbol, "timeframe": timeframe, "last_ts": last_ts},
    )
    flags = dq.bars["quality_flag"].astype(str).value_counts().to_dict()
    rules: dict[str, int] = {}
    for r in fetched.rejects:
        rules[r.rule] = rules.get(r.rule, 0) + 1
    report = IngestReport(
        run_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
        symbol=symbol,
        timeframe=timeframe,
        source=fetched.source,
        rows_read=fetched.rows_read,
        rows_rejected=len(fetched.rejects),
        rejects_by_rule=rules,
        duplicates_dropped=repeats,
        conflicting_rows=len(superseded),
        new_bars=counts.new,
        updated_bars=counts.updated,
        unchanged_bars=counts.unchanged,
        raw_partitions_written=raw_written,
        canonical_partitions_written=written,
        canonical_partitions_unchanged=unchanged,
        quarantined=quarantined,
        flags={k: int(flags.get(k, 0)) for k in ("ok", "filled", "outlier", "spike", "conflict")},
        missing_bars=len(dq.missing_ts),
        off_calendar_bars=len(dq.off_calendar_ts),
        last_ts=last_ts,
        rejects=[_reject_dict(r) for r in fetched.rejects],
    )
    path = cfg.paths.reports / "ingest" / f"{report.run_id}.json"
    report.report_path = str(path)
    _write_atomic_json(path, report.to_dict())
    return report


def _reject_dict(r: Reject) -> dict[str, Any]:
    return {"origin": r.origin, "row": r.row, "field": r.field, "rule": r.rule, "raw": r.raw}


def read_watermark(cfg: AppConfig, symbol: str, timeframe: str) -> pd.Timestamp | None:
    """Last canonical bar time stored for a symbol, or None before the first ingest."""
    path = PartitionStore(cfg.paths.raw).symbol_dir(timeframe, symbol) / "_watermark.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return pd.Timestamp(data["last_ts"]) if data.get("last_ts") else None
