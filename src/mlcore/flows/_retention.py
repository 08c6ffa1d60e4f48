"""Retention applied (data_retention.yaml, signals_policy.yaml): ``mlcore retention apply`` and
the end of each retrain.

- raw and canonical month partitions older than ``raw_months`` / ``canonical_months`` (counted
  back from each symbol's newest month) go,
  except every partition a registered version's lineage names (its
  ``dataset_index_filtered.json``); the catalog is rebuilt after canonical months went;
- feature-cache months older than ``features_months`` that no current build lists;
- snapshots older than ``snapshots_months`` and ingest reports older than
  ``ingest_reports_days`` (by modification time);
- signals: ``core.signals_live`` rows older than signals_policy ``live_days`` move to
  ``core.signals_history``; history older than ``signals_history_days`` is first written to
  signals_policy ``archive_path`` (Parquet, one file per month, merged by signal id) and only
  then deleted;
- delivered and failed rows of ``audit.notifications`` older than ``notifications_days``;
- ``core.bars_refused`` rows (the workers' refused bar messages) older than
  ``refused_bars_days``.

A version whose files are gone without a ``MODEL_PRUNED`` record makes the lineage unknown:
raw and canonical are then left alone (RETENTION_LINEAGE_UNKNOWN), the rest still runs. Each
run that removes anything is one ``retention.apply`` row in ``audit.analytics_actions``.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Table, delete, func, select

from mlcore.config import AppConfig
from mlcore.data import build_catalog, write_atomic
from mlcore.data._retention import (
    PartitionKey,
    Pruned,
    prune_by_age,
    prune_feature_months,
    prune_partitions,
)
from mlcore.errors import ConfigError
from mlcore.registry import (
    ActionResult,
    Registry,
    bars_refused,
    notifications,
    signals_history,
    signals_live,
)
from mlcore.serving import archive_signals

_DAY = timedelta(days=1)


@dataclass
class RetentionReport:
    """What one retention run removed (or would remove: ``dry_run``)."""

    dry_run: bool
    pruned: list[Pruned] = field(default_factory=list)
    signals_to_history: int = 0
    signals_exported: int = 0
    signals_deleted: int = 0
    notifications_deleted: int = 0
    refused_bars_deleted: int = 0
    lineage_unknown: list[str] = field(default_factory=list)
    protected_partitions: int = 0

    def counts(self) -> dict[str, int]:
        """How many entries went, per layer."""
        out: dict[str, int] = {}
        for p in self.pruned:
            out[p.layer] = out.get(p.layer, 0) + 1
        return out


def protected_partitions(registry: Registry) -> tuple[frozenset[PartitionKey], list[str]]:
    """(timeframe, symbol, month) of every partition a registered version's lineage names, and
    the versions whose lineage cannot be read though they were never pruned."""
    keep: set[PartitionKey] = set()
    unknown: list[str] = []
    pruned = {c.model_version for c in registry.history() if c.event == "MODEL_PRUNED"}
    for rec in registry.records():
        try:
            path = registry.served_folder(rec.model_version) / "dataset_index_filtered.json"
            index = json.loads(path.read_bytes())
            keep.update((rec.timeframe, str(p["symbol"]), str(p["month"]))
                        for p in index["partitions"])  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            if rec.model_version not in pruned:
                unknown.append(rec.model_version)
    return frozenset(keep), unknown


def apply_retention(
    cfg: AppConfig, registry: Registry, *, now: datetime | None = None, dry_run: bool = False,
    actor: str = "system:retention",
) -> RetentionReport:  # fmt: skip
    """Apply data_retention.yaml to every layer (see the module docstring)."""
    now = now or datetime.now(UTC)
    pol, paths = cfg.data_retention, cfg.paths
    report = RetentionReport(dry_run)
    protected, unknown = protected_partitions(registry)
    report.protected_partitions = len(protected)
    report.lineage_unknown = unknown
    if not unknown:
        layers = (("raw", paths.raw, pol.raw_months),
                  ("canonical", paths.canonical, pol.canonical_months))  # fmt: skip
        for layer, root, months in layers:
            report.pruned += prune_partitions(
                root, layer, months, protected,
                lock_root=paths.raw, dry_run=dry_run,
            )  # fmt: skip
        if not dry_run and any(p.layer == "canonical" for p in report.pruned):
            build_catalog(cfg)
    report.pruned += prune_feature_months(paths.features, pol.features_months, dry_run=dry_run)
    snapshot_age = timedelta(days=31 * pol.snapshots_months)
    report.pruned += prune_by_age(paths.snapshots, "snapshots", snapshot_age, now,
                                  dry_run=dry_run)  # fmt: skip
    report.pruned += prune_by_age(paths.reports / "ingest", "ingest_reports",
                                  pol.ingest_reports_days * _DAY, now, dry_run=dry_run,
                                  pattern="*.json")  # fmt: skip
    _signals(cfg, registry, now, report)
    closed = notifications.c.status.in_(("delivered", "failed"))  # a pending one always stays
    report.notifications_deleted = _delete_old(
        registry, notifications, closed & (notifications.c.created_at
                                           < now - pol.notifications_days * _DAY), dry_run
    )  # fmt: skip
    report.refused_bars_deleted = _delete_old(
        registry, bars_refused, bars_refused.c.refused_at < now - pol.refused_bars_days * _DAY,
        dry_run,
    )  # fmt: skip
    rows_gone = report.notifications_deleted + report.refused_bars_deleted
    if not dry_run and (report.pruned or report.signals_deleted or report.signals_to_history
                        or rows_gone):  # fmt: skip
        registry.record_action(
            "retention.apply", actor=actor, role="system", reason="data_retention.yaml",
            request_id=str(uuid.uuid4()), before=None,
            after={"pruned": report.counts(), "signals_to_history": report.signals_to_history,
                   "signals_deleted": report.signals_deleted,
                   "notifications_deleted": report.notifications_deleted,
                   "refused_bars_deleted": report.refused_bars_deleted},
            result=ActionResult.OK,
            details={"lineage_unknown": unknown, "protected": report.protected_partitions},
        )  # fmt: skip
    return report


def signals_archive_dir(cfg: AppConfig) -> Path:
    """Where signal history past retention is written (signals_policy.yaml archive_path)."""
    pol = cfg.signals
    if pol.archive_target not in ("LOCAL", "NAS"):
        raise ConfigError(
            "CONFIG_STORAGE_UNSUPPORTED",
            f"signals_policy.yaml: key 'archive_target' is {pol.archive_target}, but this build "
            "archives signals to LOCAL and NAS paths only",
            details={"file": "signals_policy.yaml", "key": "archive_target"},
        )
    path = Path(pol.archive_path)
    return path if path.is_absolute() else cfg.paths.archive / path


def _signals(cfg: AppConfig, registry: Registry, now: datetime, report: RetentionReport) -> None:
    engine = registry.engine
    live_before = now - cfg.signals.live_days * _DAY
    hist_before = now - cfg.data_retention.signals_history_days * _DAY
    if report.dry_run:
        with engine.connect() as conn:
            report.signals_to_history = _count(conn, signals_live, live_before)
            report.signals_deleted = _count(conn, signals_history, hist_before)
        return
    report.signals_to_history = archive_signals(engine, live_before)
    with engine.connect() as conn:
        old = pd.DataFrame(conn.execute(
            select(signals_history).where(signals_history.c.ts < hist_before)
        ).mappings().all())  # fmt: skip
    if old.empty:
        return
    folder = signals_archive_dir(cfg)
    old["ts"] = pd.to_datetime(old["ts"], utc=True)
    old["payload"] = [json.dumps(p, sort_keys=True) for p in old["payload"]]
    for col in ("return_prob", "risk_score", "position_scale", "theta1", "theta2"):
        old[col] = pd.to_numeric(old[col], errors="coerce").astype("float64")
    for month, part in old.groupby(old["ts"].dt.strftime("%Y-%m")):
        _merge_month(folder / f"signals_{month}.parquet", part)
        report.signals_exported += len(part)
    ids = old["signal_id"].tolist()
    with engine.begin() as conn:
        for i in range(0, len(ids), 500):
            gone = signals_history.c.signal_id.in_(ids[i : i + 500])
            conn.execute(delete(signals_history).where(gone))
    report.signals_deleted = len(ids)


def _delete_old(registry: Registry, table: Table, old: Any, dry_run: bool) -> int:
    """Delete the rows of ``table`` matching ``old`` (count them: ``dry_run``)."""
    with registry.engine.begin() as conn:
        if dry_run:
            query = select(func.count()).select_from(table).where(old)
            return int(conn.execute(query).scalar_one())
        return int(conn.execute(delete(table).where(old)).rowcount or 0)


def _count(conn: Connection, table: Table, before: datetime) -> int:
    query = select(func.count()).select_from(table).where(table.c.ts < before)
    return int(conn.execute(query).scalar_one())


def _merge_month(path: Path, part: pd.DataFrame) -> None:
    # Merged by signal id with what an earlier run wrote: a run killed after writing and before
    # deleting exports the same rows again, harmlessly.
    if path.exists():
        part = pd.concat([pd.read_parquet(path), part], ignore_index=True)
    part = part.drop_duplicates("signal_id", keep="last").sort_values(["ts", "signal_id"])
    buf = io.BytesIO()
    part.reset_index(drop=True).to_parquet(buf, index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
