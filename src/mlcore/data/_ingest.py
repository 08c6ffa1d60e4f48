"""Ingestion: provider rows -> raw layer (merge, conflicts) -> DQ -> canonical partitions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config import (
    SYMBOL_RE,
    TIMEFRAMES,
    AppConfig,
    CalendarSpec,
    suggest_add_instrument,
    symbol_form,
)
from mlcore.data._atomic import FaultHook, write_atomic
from mlcore.data._calendar import expected_grid
from mlcore.data._dq import DQResult, Gap, run_dq
from mlcore.data._lock import symbol_lock
from mlcore.data._provider import FetchResult, Reject
from mlcore.data._raw import (
    META_SCHEMA_VERSION,
    file_spans,
    purge_raw,
    read_raw_history,
    write_raw,
)
from mlcore.data._rules import spacing_hint
from mlcore.data._store import (
    BARS_FILE,
    EXCLUDED_FILE,
    META_FILE,
    PRICE_COLS,
    QUARANTINE_FILE,
    PartitionStore,
    bars_hash,
    json_bytes,
    month_groups,
    to_parquet_bytes,
)
from mlcore.errors import ConfigError, FatalError, shown
from mlcore.observability import DqRule, bind, record_ingest

_EMPTY = np.array([], dtype=np.int64)


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
    #: stored rows an earlier ingest let in that today's row rules reject, by rule
    purged_rows: dict[str, int] = field(default_factory=dict)
    #: stored rows inside a file's span that the file no longer holds
    replaced_rows: int = 0
    #: a file that would replace its span but had rejected rows: stored rows left alone
    replace_withheld: bool = False
    raw_partitions_removed: list[str] = field(default_factory=list)
    canonical_partitions_removed: list[str] = field(default_factory=list)
    #: the file's bars are spaced as another timeframe's (``spacing_hint``), else empty
    spacing_hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-able data."""
        return asdict(self)


def normalize_symbol(symbol: str, known: list[str]) -> str:
    """Normalize ``xauusd``, ``XAU-USD``, ``xau_usd`` ... to ``XAU/USD`` (as listed in universe).

    A symbol names a storage folder, so one not of the universe's shape (``.``, ``..``, empty,
    control characters, too long) is refused before anything is read or written.
    """
    s = symbol_form(symbol, known)
    if not SYMBOL_RE.match(s):
        raise ConfigError(
            "DATA_SYMBOL_INVALID",
            f"symbol {shown(symbol)} is not a symbol like XAU/USD (letters, digits and '.', "
            "one '/', '-' or '_' between two parts of up to 12 characters each)",
            details={"symbol": shown(symbol)},
        )
    return s


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


def _quarantine_record(hits: list[Gap], cfg: AppConfig) -> dict[str, Any]:
    worst = max(hits, key=lambda g: g.n_bars)
    return {
        "reason": "missing_run_exceeds_max_fill_bars",
        "detail": f"{len(hits)} unfilled gap(s); longest {worst.n_bars} bars "
        f"from {worst.start.isoformat()} to {worst.end.isoformat()}",
        "threshold": {"max_fill_bars": cfg.pipeline.dq_thresholds.max_fill_bars},
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


@dataclass
class _MonthSlices:
    """Row positions per month of everything DQ produced, computed once."""

    bars: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    off_calendar: dict[str, np.ndarray]
    excluded: dict[str, np.ndarray]
    conflicts: dict[str, np.ndarray]

    @classmethod
    def of(cls, dq: DQResult, conflicts: pd.DataFrame) -> _MonthSlices:
        return cls(
            bars=month_groups(dq.bars["ts"]),
            missing=month_groups(dq.missing_ts),
            off_calendar=month_groups(dq.off_calendar_ts),
            excluded=month_groups(dq.excluded["ts"]) if len(dq.excluded) else {},
            conflicts=month_groups(conflicts["ts"]) if len(conflicts) else {},
        )


def _month_files(
    month: str,
    symbol: str,
    timeframe: str,
    dq: DQResult,
    conflicts: pd.DataFrame,
    slices: _MonthSlices,
    quarantine: dict[str, Any] | None,
    cfg: AppConfig,
) -> tuple[bytes, Callable[[], dict[str, bytes]]]:
    """The month's ``__meta.json`` bytes, and a function building its other files."""
    bars = dq.bars.iloc[slices.bars.get(month, _EMPTY)].reset_index(drop=True)
    flags = bars["quality_flag"].astype(str)
    parts = []
    if month in slices.excluded:
        parts.append(dq.excluded.iloc[slices.excluded[month]])
    if month in slices.conflicts:
        parts.append(conflicts.iloc[slices.conflicts[month]])
    excluded = None
    if parts:
        excluded = pd.concat(parts, ignore_index=True)
        excluded = excluded.sort_values(["ts", "reason"], kind="stable").reset_index(drop=True)
        excluded = excluded[["ts", *PRICE_COLS, "reason"]]
    meta = {
        "schema_version": META_SCHEMA_VERSION,
        "timeframe": timeframe,
        "symbol": symbol,
        "month": month,
        "counts": {
            "bars_written": len(bars),
            "missing_gaps": len(slices.missing.get(month, _EMPTY)),
            "filled_bars": int((flags == "filled").sum()),
            "outlier_bars": int((flags == "outlier").sum()),
            "spike_flags": int((flags == "spike").sum()),
            "conflict_bars": int((flags == "conflict").sum()),
            "off_calendar_bars": len(slices.off_calendar.get(month, _EMPTY)),
        },
        "first_ts": bars["ts"].iloc[0].isoformat() if len(bars) else None,
        "last_ts": bars["ts"].iloc[-1].isoformat() if len(bars) else None,
        "data_hash": bars_hash(bars),
        "excluded_hash": bars_hash(excluded, ("reason",)) if excluded is not None else None,
        "quarantined": quarantine is not None,
        "quarantine": quarantine,
        "dq_thresholds": cfg.pipeline.dq_thresholds.model_dump(),
    }

    def build() -> dict[str, bytes]:
        out = bars.copy()
        out.insert(1, "symbol", symbol)
        out.insert(2, "timeframe", timeframe)
        files = {BARS_FILE: to_parquet_bytes(out)}
        if excluded is not None:
            files[EXCLUDED_FILE] = to_parquet_bytes(excluded)
        if quarantine is not None:
            files[QUARANTINE_FILE] = json_bytes(quarantine)
        return files

    return json_bytes(meta), build


def _quarantines(gaps: list[Gap], cfg: AppConfig) -> dict[str, dict[str, Any]]:
    """Quarantine record per month touched by an unfilled gap."""
    by_month: dict[str, list[Gap]] = {}
    for g in (g for g in gaps if not g.filled):
        for month in pd.period_range(g.start.tz_convert(None), g.end.tz_convert(None), freq="M"):
            by_month.setdefault(str(month), []).append(g)
    return {m: _quarantine_record(hits, cfg) for m, hits in by_month.items()}


def _write_atomic_json(path: Path, obj: dict[str, Any]) -> None:
    write_atomic(path, json_bytes(obj))


def resolve_calendar(cfg: AppConfig, symbol: str, calendar: str | None) -> CalendarSpec:
    """The trading calendar of ``symbol``: from ``--calendar`` or universe.yaml."""
    name = calendar
    if name is None:
        inst = cfg.universe.instruments.get(symbol)
        if inst is None:
            raise ConfigError(
                "DATA_SYMBOL_UNKNOWN",
                f"symbol {symbol!r} is not in universe.yaml instruments "
                f"({sorted(cfg.universe.instruments)}); add it with "
                f"{suggest_add_instrument(cfg, symbol)} in a workspace (`mlcore init DIR` makes "
                "one), or pass --calendar",
                details={"symbol": symbol},
            )
        name = inst.calendar
    if name not in cfg.universe.calendars:
        raise ConfigError(
            "DATA_CALENDAR_UNKNOWN",
            f"calendar {name!r} is not defined in universe.yaml ({sorted(cfg.universe.calendars)})",
        )
    return cfg.universe.calendars[name]


def _rebuild_canonical(
    cfg: AppConfig,
    symbol: str,
    timeframe: str,
    cal: CalendarSpec,
    touched: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    force: bool,
    fault: FaultHook | None,
) -> tuple[DQResult, list[str], int, dict[str, list[str]], list[str]]:
    raw_store = PartitionStore(cfg.paths.raw)
    canon = PartitionStore(cfg.paths.canonical)
    raw, conflicts = read_raw_history(raw_store, timeframe, symbol, touched)
    if raw.empty:
        grid = pd.DatetimeIndex([], tz="UTC")
    else:
        grid = expected_grid(cal, timeframe, raw["ts"].iloc[0], raw["ts"].iloc[-1])
    dq = run_dq(raw, grid, cfg.pipeline.dq_thresholds)
    slices = _MonthSlices.of(dq, conflicts)
    quarantines = _quarantines(dq.gaps, cfg)
    months = set(slices.bars) | set(slices.missing)
    written: list[str] = []
    unchanged = 0
    quarantined: dict[str, list[str]] = {}
    for month in sorted(months):
        q = quarantines.get(month)
        meta, build = _month_files(month, symbol, timeframe, dq, conflicts, slices, q, cfg)
        if q is not None:
            quarantined[month] = [q["reason"], q["detail"]]
        if canon.write_unless_same(
            timeframe, symbol, month, (META_FILE, meta), build,
            force=force, fault=fault, required=(BARS_FILE,),
        ):  # fmt: skip
            written.append(month)
        else:
            unchanged += 1
    # A month the raw history no longer yields (its rows purged or replaced) must not stay
    # behind in the catalog with its old bars or quarantine.
    stale = [m for m in canon.months(timeframe, symbol) if m not in months]
    for month in stale:
        canon.remove(timeframe, symbol, month)
    return dq, written, unchanged, quarantined, stale


def ingest(
    cfg: AppConfig,
    fetched: FetchResult,
    symbol: str,
    timeframe: str,
    *,
    calendar: str | None = None,
    rewrite: bool = False,
    fault: FaultHook | None = None,
    replace_span: bool = False,
    now: pd.Timestamp | None = None,
) -> IngestReport:
    """Store fetched bars: merge into the raw layer, run DQ, rewrite changed canonical months.

    Idempotent: ingesting the same rows again writes nothing. ``rewrite`` rewrites every
    touched partition even when its manifest is unchanged (to repair damaged files).
    ``replace_span`` (a file: the truth between its first and last bar, wherever its bars are
    at most ``SPAN_MAX_GAP`` apart) drops stored rows in those runs it does not hold. Every
    ingest also drops stored rows that today's row rules reject (after ``now`` plus one bar,
    before 1970, off the grid, bad prices) and canonical months no longer derived from the raw
    history, so a corrected file repairs what a bad one did.
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
    # One ingest of a (symbol, timeframe) at a time: each merges into what the other wrote.
    # A file with rejected rows never removes stored rows: a rejected row (a mistyped date, a
    # bad price) stands for a bar whose place in time the file does not say for sure.
    spans = file_spans(unique["ts"]) if replace_span and not fetched.rejects else None
    tol = cfg.pipeline.dq_thresholds.price_abs_tolerance
    earliest = pd.Timestamp(cfg.pipeline.earliest_bar, tz="UTC")
    with symbol_lock(cfg.paths.raw, symbol, timeframe):
        raw_written, counts, touched = write_raw(
            raw_store, timeframe, symbol, (unique, superseded), rewrite, fault, spans
        )
        purged, emptied = purge_raw(
            raw_store, timeframe, symbol, touched, (now, tol, earliest), fault
        )
        dq, written, unchanged, quarantined, stale = _rebuild_canonical(
            cfg, symbol, timeframe, cal, touched, rewrite, fault
        )
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
        purged_rows=purged,
        replaced_rows=counts.replaced,
        replace_withheld=replace_span and bool(fetched.rejects),
        raw_partitions_removed=sorted(set(counts.removed_months) | set(emptied)),
        canonical_partitions_removed=stale,
        spacing_hint=spacing_hint(unique["ts"], timeframe),
    )
    path = cfg.paths.reports / "ingest" / f"{report.run_id}.json"
    report.report_path = str(path)
    _write_atomic_json(path, report.to_dict())
    _record_metrics(cfg, report)
    return report


def _record_metrics(cfg: AppConfig, report: IngestReport) -> None:
    """data_bars_written_total and dq_fail_total{rule} (the watermark's lag is computed at each
    scrape by ``mlcore metrics serve``: it grows while nothing ingests)."""
    bind(cfg)
    failures = {
        DqRule.ROW_REJECTED: report.rows_rejected,
        DqRule.CONFLICT: report.conflicting_rows,
        DqRule.OUTLIER: report.flags["outlier"],
        DqRule.SPIKE: report.flags["spike"],
        DqRule.FILLED: report.flags["filled"],
        DqRule.MISSING: report.missing_bars,
        DqRule.QUARANTINED: len(report.quarantined),
    }
    written = report.new_bars + report.updated_bars
    record_ingest(cfg, report.symbol, report.timeframe, written, failures)


def _reject_dict(r: Reject) -> dict[str, Any]:
    return {"origin": r.origin, "row": r.row, "field": r.field, "rule": r.rule, "raw": r.raw}
