"""The model registry: one row per model version with its lineage and status, and every status
change written to ``audit.config_changes`` in the same transaction.

Status changes follow one state machine (``TRANSITIONS``); anything else is refused with the
reason. Every decision needs ``notes``. Deploying a version demotes the one in service to
``approved`` (kept for a rollback); a rollback marks the deployed version ``rolled_back`` and
deploys the version that was in service before it.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml
from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from mlcore.registry._store import ArtifactStore, damaged_files, restore_folder
from mlcore.registry._tables import (
    RUN_STATUSES,
    STATUSES,
    alerts,
    config_changes,
    model_registry,
    retrain_runs,
)

TRANSITIONS: Final[dict[str, tuple[str, ...]]] = {
    "draft": ("candidate", "rejected"),
    "candidate": ("approved", "rejected"),
    "approved": ("deployed", "rejected"),
    "deployed": ("approved", "rolled_back"),
    "rolled_back": ("deployed", "rejected"),
    "rejected": (),
}


class RegistryError(ValueError):
    """A registry request that cannot be carried out, with the reason."""


@dataclass(frozen=True)
class ModelRecord:
    """One row of ``core.model_registry``."""

    model_version: str
    status: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    deployed_at: datetime | None
    timeframe: str
    artifact_path: str
    theta1: float | None
    theta2: float | None
    code_hash: str
    data_hash: str
    seed: int
    notes: str
    metrics: dict[str, Any]
    checksums: dict[str, str]


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC).
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _record(row: Any) -> ModelRecord:
    m = row._mapping
    return ModelRecord(
        model_version=m["model_version"], status=m["status"], created_at=m["created_at"],
        created_by=m["created_by"], updated_at=m["updated_at"], deployed_at=m["deployed_at"],
        timeframe=m["timeframe"], artifact_path=m["artifact_path"],
        theta1=None if m["theta1"] is None else float(m["theta1"]),
        theta2=None if m["theta2"] is None else float(m["theta2"]),
        code_hash=m["code_hash"], data_hash=m["data_hash"], seed=int(m["seed"]),
        notes=m["notes"], metrics=dict(m["metrics_json"]), checksums=dict(m["checksums_json"]),
    )  # fmt: skip


def _serialize(conn: Connection) -> None:
    """Changes of the version in service go one at a time. Row locks cannot do it: a version
    becoming deployed is not yet a deployed row another transaction could wait on. SQLite
    transactions already begin with the write lock (``BEGIN IMMEDIATE``)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(727272)"))


def _need_notes(notes: str, what: str) -> str:
    if not notes or not notes.strip():
        raise RegistryError(f"{what} needs notes: say why (the spec requires the reason)")
    return notes.strip()


def _train_period(folder: Path) -> tuple[date | None, date | None]:
    try:
        index = json.loads((folder / "dataset_index_filtered.json").read_bytes())
        months = sorted(p["month"] for p in index["partitions"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    if not months:
        return None, None
    first = pd.Period(months[0], "M")
    last = pd.Period(months[-1], "M")
    return first.start_time.date(), last.end_time.date()


def _read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads((folder / name).read_bytes())
    except FileNotFoundError:
        raise RegistryError(f"{folder / name}: missing; is {folder} a model version?") from None
    except ValueError as exc:
        raise RegistryError(f"{folder / name}: not JSON ({exc})") from None


def version_row(folder: Path, theta: tuple[float, float] | None) -> dict[str, Any]:
    """The registry row's lineage columns for the model version in ``folder``."""
    run = _read_json(folder, "run.json")
    sums = _read_json(folder, "checksums.json")
    metrics = _read_json(folder, "metrics.json")
    try:
        params = yaml.safe_load((folder / "params.yaml").read_bytes())
        timeframe, seed = str(params["timeframe"]), int(params["seed"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"{folder / 'params.yaml'}: unusable ({exc})") from None
    models = {}
    for name in ("ai1", "ai2", "ai3"):
        found = [f for f in (f"{name}.lgbm.txt", f"{name}.xgb.json") if f in sums]
        if not found:
            raise RegistryError(f"{folder}: checksums.json lists no {name} model file")
        models[name] = str(folder / found[0])
    start, end = _train_period(folder)
    return {
        "model_version": folder.name,
        "timeframe": timeframe,
        "train_period_start": start,
        "train_period_end": end,
        "dataset_index_path": str(folder / "dataset_index_filtered.json"),
        "feature_schema_path": str(folder / "feature_schema.json"),
        "model_ai1_path": models["ai1"],
        "model_ai2_path": models["ai2"],
        "model_ai3_path": models["ai3"],
        "params_yaml_path": str(folder / "params.yaml"),
        "artifact_path": str(folder),
        "metrics_json": metrics,
        "checksums_json": sums,
        "theta1": None if theta is None else theta[0],
        "theta2": None if theta is None else theta[1],
        "code_hash": str(run.get("code_hash", "unknown")),
        "data_hash": str(run.get("data_hash", "unknown")),
        "seed": seed,
    }


class Registry:
    """The registry on an engine (see :func:`mlcore.registry.open_registry`), with the artifact
    store that keeps an archived copy of every registered version."""

    def __init__(self, engine: Engine, store: ArtifactStore | None = None) -> None:
        self.engine = engine
        self.store = store

    # -- reading ------------------------------------------------------------------------
    def get(self, version: str) -> ModelRecord:
        """The version's record; ``RegistryError`` if it is not registered."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(model_registry).where(model_registry.c.model_version == version)
            ).first()
        if row is None:
            raise RegistryError(f"model version {version!r} is not registered")
        return _record(row)

    def records(self, status: str | None = None) -> list[ModelRecord]:
        """Every record (or those with ``status``), newest first."""
        query = select(model_registry).order_by(model_registry.c.model_version.desc())
        if status is not None:
            if status not in STATUSES:
                raise RegistryError(f"unknown status {status!r}; known: {list(STATUSES)}")
            query = query.where(model_registry.c.status == status)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def deployed(self) -> ModelRecord | None:
        """The version in service, if any."""
        found = self.records("deployed")
        return found[0] if found else None

    def history(self, version: str | None = None) -> list[dict[str, Any]]:
        """``audit.config_changes`` rows (of one version), oldest first."""
        query = select(config_changes).order_by(config_changes.c.change_id)
        if version is not None:
            query = query.where(config_changes.c.model_version == version)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- writing ------------------------------------------------------------------------
    def register(
        self, folder: Path, *, actor: str, notes: str, status: str = "draft",
        theta: tuple[float, float] | None = None,
    ) -> ModelRecord:  # fmt: skip
        """Add the model version in ``folder`` (as ``draft`` or ``candidate``)."""
        notes = _need_notes(notes, "registering a model version")
        if status not in ("draft", "candidate"):
            raise RegistryError(f"a new version starts as draft or candidate, not {status!r}")
        row = version_row(folder, theta)
        exists = self._exists(row["model_version"])
        if exists:
            raise RegistryError(f"model version {row['model_version']!r} is already registered")
        if self.store is not None:
            try:
                row["artifact_path"] = self.store.put(
                    row["model_version"], folder, row["checksums_json"]
                )
            except (OSError, ValueError) as exc:
                raise RegistryError(f"{folder}: cannot be archived ({exc})") from None
        now = _now()
        row |= {"status": status, "created_at": now, "created_by": actor, "updated_at": now,
                "deployed_at": None, "notes": notes}  # fmt: skip
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(model_registry).values(**row))
                self._audit(conn, "MODEL_REGISTERED", row["model_version"], None, status, notes,
                            actor, {"artifact_path": row["artifact_path"]})  # fmt: skip
        except IntegrityError:
            raise RegistryError(
                f"model version {row['model_version']!r} is already registered"
            ) from None
        return self.get(row["model_version"])

    def transition(
        self, version: str, to: str, *, actor: str, notes: str,
        theta: tuple[float, float] | None = None,
    ) -> ModelRecord:  # fmt: skip
        """Move ``version`` to ``to`` along the state machine. Deploying demotes the version in
        service to ``approved``."""
        notes = _need_notes(notes, f"moving {version} to {to}")
        if to not in STATUSES:
            raise RegistryError(f"unknown status {to!r}; known: {list(STATUSES)}")
        with self.engine.begin() as conn:
            if to == "deployed":
                _serialize(conn)
            current = self._locked(conn, version)
            self._check(version, current, to)
            now = _now()
            if to == "deployed":
                for other in conn.execute(
                    select(model_registry.c.model_version)
                    .where(model_registry.c.status == "deployed")
                    .with_for_update()
                ).scalars():
                    why = f"replaced in service by {version}"
                    self._set(conn, other, "approved", now, None, why)
                    self._audit(conn, "MODEL_STATUS", other, "deployed", "approved", why, actor,
                                None)  # fmt: skip
            self._set(conn, version, to, now, theta, notes)
            self._audit(conn, "MODEL_STATUS", version, current, to, notes, actor,
                        None if theta is None else {"theta": list(theta)})  # fmt: skip
        return self.get(version)

    def rollback(self, *, actor: str, notes: str) -> ModelRecord:
        """Take the version in service out (``rolled_back``) and put back the one deployed
        before it; returns the version now in service."""
        notes = _need_notes(notes, "a rollback")
        with self.engine.begin() as conn:
            _serialize(conn)
            current = conn.execute(
                select(model_registry.c.model_version)
                .where(model_registry.c.status == "deployed")
                .with_for_update()
            ).scalar()
            if current is None:
                raise RegistryError("no version is deployed: nothing to roll back")
            previous = conn.execute(
                select(model_registry.c.model_version)
                .where(model_registry.c.status == "approved")
                .where(model_registry.c.deployed_at.is_not(None))
                .order_by(model_registry.c.deployed_at.desc())
                .limit(1)
                .with_for_update()
            ).scalar()
            if previous is None:
                raise RegistryError(
                    f"{current} is deployed but no earlier deployed version is kept to roll back to"
                )
            now = _now()
            self._set(conn, current, "rolled_back", now, None, notes)
            self._set(conn, previous, "deployed", now, None, notes)
            details = {"from": current, "to": previous}
            self._audit(conn, "CONFIG_ROLLBACK", current, "deployed", "rolled_back", notes,
                        actor, details)  # fmt: skip
            self._audit(conn, "CONFIG_ROLLBACK", previous, "approved", "deployed", notes, actor,
                        details)  # fmt: skip
        return self.get(previous)

    # -- retraining runs (audit.retrain_runs) ----------------------------------------------
    def start_run(self, *, log_path: str | None = None, flow_run_id: str | None = None) -> str:
        """Record a retraining run as started; returns its id."""
        run_id = str(uuid.uuid4())
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(insert(retrain_runs).values(
                run_id=run_id, started_at=now, status="running", retry_count=0,
                log_path=log_path, heartbeat_at=now, flow_run_id=flow_run_id,
            ))  # fmt: skip
        return run_id

    def heartbeat(self, run_id: str) -> None:
        """Record that a run is alive now."""
        with self.engine.begin() as conn:
            conn.execute(
                update(retrain_runs)
                .where(retrain_runs.c.run_id == run_id)
                .values(heartbeat_at=_now())
            )

    def stalled_runs(self, older_than_s: float) -> list[dict[str, Any]]:
        """Runs still marked running or retrying whose last heartbeat is older than
        ``older_than_s`` seconds (their process died or hangs)."""
        cutoff = _now() - pd.Timedelta(seconds=older_than_s)
        return [
            r
            for r in self.runs()
            if r["status"] in ("running", "retrying")
            and _aware(r["heartbeat_at"] or r["started_at"]) < cutoff
        ]

    def finish_run(
        self, run_id: str, status: str, *, retry_count: int = 0,
        model_version: str | None = None, theta: tuple[float, float] | None = None,
        metrics: dict[str, Any] | None = None, error_message: str | None = None,
    ) -> None:  # fmt: skip
        """Record how a run ended (or that it is being retried)."""
        if status not in RUN_STATUSES or status == "running":
            raise RegistryError(f"a run ends as one of {list(RUN_STATUSES[1:])}, not {status!r}")
        if status in ("failed", "aborted") and not error_message:
            raise RegistryError(f"a {status} run needs its error message")
        values: dict[str, Any] = {
            "status": status, "retry_count": retry_count, "model_version": model_version,
            "metrics": metrics, "ended_at": None if status == "retrying" else _now(),
        }  # fmt: skip
        if error_message is not None:
            # A run that succeeded after retries keeps the error it retried.
            values["error_message"] = error_message
        if theta is not None:
            values["theta1"], values["theta2"] = theta
        with self.engine.begin() as conn:
            done = conn.execute(
                update(retrain_runs).where(retrain_runs.c.run_id == run_id).values(**values)
            ).rowcount
        if done != 1:
            raise RegistryError(f"retrain run {run_id!r} is not recorded")

    def runs(self) -> list[dict[str, Any]]:
        """Every retraining run, newest first."""
        query = select(retrain_runs).order_by(retrain_runs.c.started_at.desc())
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def consecutive_failures(self) -> int:
        """Failed runs since the last successful one or the last resume (retries, running and
        aborted runs skipped)."""
        resumed = self._last_event("RETRAIN_RESUMED")
        count = 0
        for run in self.runs():
            if run["status"] == "success":
                break
            if resumed is not None and _aware(run["started_at"]) < resumed:
                break
            if run["status"] == "failed":
                count += 1
        return count

    def resume_retraining(self, *, actor: str, notes: str) -> None:
        """Clear a failure stop: failures before now no longer count."""
        notes = _need_notes(notes, "resuming retraining")
        cleared = self.consecutive_failures()
        with self.engine.begin() as conn:
            self._audit(conn, "RETRAIN_RESUMED", None, None, None, notes, actor,
                        {"failures_cleared": cleared})  # fmt: skip

    def raise_alert(
        self, code: str, message: str, *, channel: str, severity: str = "error",
        run_id: str | None = None, details: dict[str, Any] | None = None,
    ) -> str:  # fmt: skip
        """Record an alert in ``audit.alerts``; returns its id."""
        alert_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(insert(alerts).values(
                alert_id=alert_id, raised_at=_now(), code=code, severity=severity,
                channel=channel, message=message, run_id=run_id, details=details,
            ))  # fmt: skip
        return alert_id

    def alerts(self, code: str | None = None) -> list[dict[str, Any]]:
        """Recorded alerts (or those of one code), newest first."""
        query = select(alerts).order_by(alerts.c.raised_at.desc())
        if code is not None:
            query = query.where(alerts.c.code == code)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def _last_event(self, event: str) -> datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(config_changes.c.changed_at)
                .where(config_changes.c.event == event)
                .order_by(config_changes.c.changed_at.desc())
                .limit(1)
            ).scalar()
        return None if value is None else _aware(value)

    # -- artifacts ----------------------------------------------------------------------
    def served_folder(self, version: str) -> Path:
        """Where the version's files are served from (``models_root/{version}``)."""
        return Path(self._path(version, "model_ai1_path")).parent

    def verify(self, version: str) -> dict[str, str]:
        """Served files that are missing or fail the checksums the registry recorded."""
        rec = self.get(version)
        return damaged_files(self.served_folder(version), rec.checksums)

    def restore(self, version: str, *, actor: str) -> dict[str, str]:
        """Replace the version's missing or damaged served files with their archived copies
        (each verified); returns what was restored and why."""
        if self.store is None:
            raise RegistryError("this registry has no artifact store to restore from")
        rec = self.get(version)
        try:
            restored = restore_folder(self.store, version, self.served_folder(version),
                                      rec.checksums)  # fmt: skip
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        if restored:
            with self.engine.begin() as conn:
                self._audit(conn, "MODEL_RESTORED", version, rec.status, rec.status,
                            f"restored from the artifact store: {restored}", actor,
                            {"files": restored})  # fmt: skip
        return restored

    def prune(self, keep: int, *, actor: str, dry_run: bool = False) -> list[str]:
        """Delete the served files and archived copies of versions beyond the newest ``keep``,
        never one that is deployed, rolled back, or was deployed before (a rollback target).
        The registry rows stay, marked in the audit trail."""
        if keep < 5:
            raise RegistryError(f"keep must be at least 5 versions (spec), got {keep}")
        records = self.records()
        protected = {
            r.model_version
            for r in records
            if r.status in ("deployed", "rolled_back") or r.deployed_at is not None
        }
        gone = [r for r in records[keep:] if r.model_version not in protected]
        if dry_run:
            return [r.model_version for r in gone]
        for r in gone:
            folder = self.served_folder(r.model_version)
            shutil.rmtree(folder, ignore_errors=True)
            if self.store is not None:
                self.store.delete(r.model_version)
            with self.engine.begin() as conn:
                self._audit(conn, "MODEL_PRUNED", r.model_version, r.status, r.status,
                            f"beyond the newest {keep} versions", actor, None)  # fmt: skip
        return [r.model_version for r in gone]

    # -- helpers ------------------------------------------------------------------------
    def _exists(self, version: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(model_registry.c.model_version).where(
                        model_registry.c.model_version == version
                    )
                ).first()
                is not None
            )

    def _path(self, version: str, column: str) -> str:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(model_registry.c[column]).where(model_registry.c.model_version == version)
            ).scalar()
        if value is None:
            raise RegistryError(f"model version {version!r} is not registered")
        return str(value)

    @staticmethod
    def _locked(conn: Connection, version: str) -> str:
        status = conn.execute(
            select(model_registry.c.status)
            .where(model_registry.c.model_version == version)
            .with_for_update()
        ).scalar()
        if status is None:
            raise RegistryError(f"model version {version!r} is not registered")
        return str(status)

    @staticmethod
    def _check(version: str, current: str, to: str) -> None:
        allowed = TRANSITIONS[current]
        if to not in allowed:
            shown = ", ".join(allowed) if allowed else "nothing (final)"
            raise RegistryError(f"{version} is {current}: it can go to {shown}, not {to}")

    @staticmethod
    def _set(
        conn: Connection, version: str, status: str, now: datetime,
        theta: tuple[float, float] | None, notes: str,
    ) -> None:  # fmt: skip
        # ``notes`` holds the reason for the status in force (every earlier one is in the audit).
        values: dict[str, Any] = {"status": status, "updated_at": now, "notes": notes}
        if status == "deployed":
            values["deployed_at"] = now
        if theta is not None:
            values["theta1"], values["theta2"] = theta
        conn.execute(
            update(model_registry).where(model_registry.c.model_version == version).values(**values)
        )

    @staticmethod
    def _audit(
        conn: Connection, event: str, version: str | None, old: str | None, new: str | None,
        notes: str, actor: str, details: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        conn.execute(insert(config_changes).values(
            changed_at=_now(), actor=actor, event=event, model_version=version,
            old_status=old, new_status=new, notes=notes, details=details,
        ))  # fmt: skip
