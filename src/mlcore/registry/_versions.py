"""Model versions and their state machine: one row per version in ``core.model_registry``
with its lineage and status, and every status change written to ``audit.config_changes`` in the
same transaction.

Status changes follow ``TRANSITIONS``; anything else is refused with the reason. Every decision
needs ``notes``. Deploying a version demotes the one in service to ``approved`` (kept for a
rollback); a rollback marks the deployed version ``rolled_back`` and deploys the version that
was in service before it.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from mlcore.registry._common import (
    aware,
    check_version_id,
    maybe_aware,
    maybe_float,
    need_notes,
    now,
    write_audit,
)
from mlcore.registry._errors import RegistryError
from mlcore.registry._records import (
    TRANSITIONS,
    AuditEvent,
    ModelRecord,
    ModelStatus,
    Rollback,
    StatusChange,
)
from mlcore.registry._store import ArtifactStore
from mlcore.registry._tables import STATUSES, config_changes, model_registry

_S = ModelStatus


def not_registered(version: str) -> RegistryError:
    """The error for a version the registry does not hold."""
    return RegistryError(
        "REGISTRY_VERSION_NOT_FOUND",
        f"model version {version!r} is not registered; `mlcore registry list` shows those "
        "that are, `mlcore registry register` adds one",
    )


def model_status(status: str) -> ModelStatus:
    """``status`` as a :class:`ModelStatus`; ``RegistryError`` naming the known ones."""
    try:
        return ModelStatus(status)
    except ValueError:
        raise RegistryError(
            "REGISTRY_STATE_UNKNOWN_STATUS",
            f"unknown status {status!r}; known: {[str(s) for s in ModelStatus]}",
        ) from None


def _record(row: Any) -> ModelRecord:
    m = row._mapping
    return ModelRecord(
        model_version=m["model_version"], status=ModelStatus(m["status"]),
        created_at=aware(m["created_at"]), created_by=m["created_by"],
        updated_at=aware(m["updated_at"]), deployed_at=maybe_aware(m["deployed_at"]),
        timeframe=m["timeframe"], artifact_path=m["artifact_path"],
        theta1=maybe_float(m["theta1"]), theta2=maybe_float(m["theta2"]),
        code_hash=m["code_hash"], data_hash=m["data_hash"], seed=int(m["seed"]),
        notes=m["notes"], metrics=dict(m["metrics_json"]), checksums=dict(m["checksums_json"]),
    )  # fmt: skip


def _status(value: str | None) -> ModelStatus | str | None:
    """A model status as its enum; another state (a config's: pr_created ...) as stored."""
    if value is None or value not in STATUSES:
        return value
    return ModelStatus(value)


def change_record(row: Any) -> StatusChange:
    """An ``audit.config_changes`` row as a record."""
    m = row._mapping
    return StatusChange(
        change_id=int(m["change_id"]), changed_at=aware(m["changed_at"]), actor=m["actor"],
        event=m["event"], model_version=m["model_version"],
        old_status=_status(m["old_status"]), new_status=_status(m["new_status"]),
        notes=m["notes"], details=m["details"],
    )  # fmt: skip


_DEPLOY_LOCK = 727272
_REGISTER_LOCK = 727273


def _serialize(conn: Connection, key: int = _DEPLOY_LOCK) -> None:
    """Changes of the version in service go one at a time (and, under their own key,
    registrations). Row locks cannot do it: a version becoming deployed is not yet a deployed
    row another transaction could wait on, nor is a version being registered. SQLite
    transactions already begin with the write lock (``BEGIN IMMEDIATE``)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


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


def _archive(store: ArtifactStore, version: str, folder: Path, sums: dict[str, str]) -> str:
    """Archive the version's files in ``store``; where they went."""
    try:
        return store.put(version, folder, sums)
    except RegistryError:
        raise
    except (OSError, ValueError) as exc:
        raise RegistryError(
            "REGISTRY_ARTIFACT_DAMAGED", f"{folder}: cannot be archived ({exc})"
        ) from None


def _unreadable(message: str) -> RegistryError:
    return RegistryError("REGISTRY_VERSION_UNREADABLE", message)


def _read_json(folder: Path, name: str) -> Any:
    if (folder / name).exists() and not (folder / name).is_file():  # a FIFO would block
        raise _unreadable(f"{folder / name}: not a regular file (a folder, a FIFO, a device)")
    try:
        return json.loads((folder / name).read_bytes())
    except FileNotFoundError:
        raise _unreadable(f"{folder / name}: missing; is {folder} a model version?") from None
    except ValueError as exc:
        raise _unreadable(f"{folder / name}: not JSON ({exc})") from None


def _theta_columns(theta: tuple[float, float] | None) -> tuple[float | None, float | None]:
    """θ as stored: two finite rates in [0, 1] (``RegistryError`` otherwise: never recorded)."""
    if theta is None:
        return None, None
    t1, t2 = (float(v) for v in theta)
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (t1, t2)):
        raise RegistryError(
            "REGISTRY_REQUEST_THETA_INVALID",
            f"θ ({t1!r}, {t2!r}) is not a pair of finite rates in [0, 1]: not recorded",
        )
    return t1, t2


def _details(
    theta: tuple[float, float] | None, override: dict[str, Any] | None
) -> dict[str, Any] | None:
    details: dict[str, Any] = {} if theta is None else {"theta": list(theta)}
    if override is not None:
        details["override"] = override
    return details or None


def version_row(folder: Path, theta: tuple[float, float] | None) -> dict[str, Any]:
    """The registry row's lineage columns for the model version in ``folder``."""
    theta1, theta2 = _theta_columns(theta)
    if not folder.is_dir():
        raise _unreadable(
            f"{folder}: no such model version folder; train one (`mlcore train`) or give the "
            "path of an existing version"
        )
    run = _read_json(folder, "run.json")
    sums = _read_json(folder, "checksums.json")
    metrics = _read_json(folder, "metrics.json")
    try:
        if not (folder / "params.yaml").is_file():
            raise ValueError("missing or not a regular file")
        params = yaml.safe_load((folder / "params.yaml").read_bytes())
        timeframe, seed = str(params["timeframe"]), int(params["seed"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise _unreadable(f"{folder / 'params.yaml'}: unusable ({exc})") from None
    models = {}
    for name in ("ai1", "ai2", "ai3"):
        found = [f for f in (f"{name}.lgbm.txt", f"{name}.xgb.json") if f in sums]
        if not found:
            raise _unreadable(f"{folder}: checksums.json lists no {name} model file")
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
        "theta1": theta1,
        "theta2": theta2,
        "code_hash": str(run.get("code_hash", "unknown")),
        "data_hash": str(run.get("data_hash", "unknown")),
        "seed": seed,
    }


class Versions:
    """Model versions on ``engine``: reading, registering (archived in ``store`` if given) and
    the state machine."""

    def __init__(self, engine: Engine, store: ArtifactStore | None = None) -> None:
        self.engine = engine
        self.store = store

    # -- reading ------------------------------------------------------------------------
    def get(self, version: str) -> ModelRecord:
        """The version's record; ``RegistryError`` if it is not registered."""
        with self.engine.connect() as conn:
            return self._read(conn, version)

    @staticmethod
    def _read(conn: Connection, version: str) -> ModelRecord:
        """The version's record as ``conn`` sees it: inside a change's transaction, what
        that change did, not what another did after it committed."""
        row = conn.execute(
            select(model_registry).where(model_registry.c.model_version == version)
        ).first()
        if row is None:
            raise not_registered(version)
        return _record(row)

    def records(self, status: str | None = None) -> list[ModelRecord]:
        """Every record (or those with ``status``), newest first."""
        query = select(model_registry).order_by(model_registry.c.model_version.desc())
        if status is not None:
            query = query.where(model_registry.c.status == model_status(status).value)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def deployed(self) -> ModelRecord | None:
        """The version in service, if any."""
        found = self.records(_S.DEPLOYED)
        return found[0] if found else None

    def history(self, version: str | None = None) -> list[StatusChange]:
        """``audit.config_changes`` rows (of one version), oldest first."""
        query = select(config_changes).order_by(config_changes.c.change_id)
        if version is not None:
            query = query.where(config_changes.c.model_version == version)
        with self.engine.connect() as conn:
            return [change_record(r) for r in conn.execute(query)]

    def path(self, version: str, column: str) -> str:
        """One path column of the version's row."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(model_registry.c[column]).where(model_registry.c.model_version == version)
            ).scalar()
        if value is None:
            raise not_registered(version)
        return str(value)

    def exists(self, version: str) -> bool:
        """True when ``version`` is registered."""
        query = select(model_registry.c.model_version).where(
            model_registry.c.model_version == version
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    # -- writing ------------------------------------------------------------------------
    def register(
        self, folder: Path, *, actor: str, notes: str, status: str = _S.DRAFT,
        theta: tuple[float, float] | None = None,
    ) -> ModelRecord:  # fmt: skip
        """Add the model version in ``folder`` (as ``draft`` or ``candidate``)."""
        notes = need_notes(notes, "registering a model version")
        if status not in (_S.DRAFT, _S.CANDIDATE):
            raise RegistryError(
                "REGISTRY_STATE_INVALID_TRANSITION",
                f"a new version starts as draft or candidate, not {status!r}",
            )
        row = version_row(folder, theta)
        version = check_version_id(row["model_version"])
        already = RegistryError(
            "REGISTRY_VERSION_EXISTS",
            f"model version {version!r} is already registered (`mlcore train` registers what it "
            f"writes): `mlcore registry show {version}` shows it, `mlcore registry promote` "
            "moves it on",
        )
        try:
            # Checked, archived and inserted under one lock: a second registration of the
            # same name must not overwrite the archived copy of the first.
            with self.engine.begin() as conn:
                _serialize(conn, _REGISTER_LOCK)
                if conn.execute(
                    select(model_registry.c.model_version).where(
                        model_registry.c.model_version == version
                    )
                ).first():
                    raise already
                if self.store is not None:
                    row["artifact_path"] = _archive(self.store, version, folder,
                                                    row["checksums_json"])  # fmt: skip
                stamp = now()
                row |= {"status": str(status), "created_at": stamp, "created_by": actor,
                        "updated_at": stamp, "deployed_at": None, "notes": notes}  # fmt: skip
                conn.execute(insert(model_registry).values(**row))
                write_audit(
                    conn,
                    AuditEvent.MODEL_REGISTERED,
                    version,
                    None,
                    status,
                    notes,
                    actor,
                    # θ recorded with it: `mlcore audit at` reads θ from the audit trail.
                    {**(_details(theta, None) or {}), "artifact_path": row["artifact_path"]},
                )
                return self._read(conn, version)
        except IntegrityError:
            raise already from None

    def transition(
        self, version: str, to: str, *, actor: str, notes: str,
        theta: tuple[float, float] | None = None, override: dict[str, Any] | None = None,
    ) -> ModelRecord:  # fmt: skip
        """Move ``version`` to ``to`` along the state machine. Deploying demotes the version in
        service to ``approved``. ``override`` is recorded in the audit row's details."""
        notes = need_notes(notes, f"moving {version} to {to}")
        target = model_status(to)
        with self.engine.begin() as conn:
            if target is _S.DEPLOYED:
                _serialize(conn)
            current = self._locked(conn, version)
            self._check(version, current, target)
            stamp = now()
            if target is _S.DEPLOYED:
                for other in conn.execute(
                    select(model_registry.c.model_version)
                    .where(model_registry.c.status == _S.DEPLOYED.value)
                    .with_for_update()
                ).scalars():
                    why = f"replaced in service by {version}"
                    self._set(conn, other, _S.APPROVED, stamp, None, why)
                    write_audit(
                        conn,
                        AuditEvent.MODEL_STATUS,
                        other,
                        _S.DEPLOYED,
                        _S.APPROVED,
                        why,
                        actor,
                        None,
                    )
            self._set(conn, version, target, stamp, theta, notes)
            write_audit(
                conn,
                AuditEvent.MODEL_STATUS,
                version,
                current,
                target,
                notes,
                actor,
                _details(theta, override),
            )
            return self._read(conn, version)

    def rollback(self, *, actor: str, notes: str, expected: str | None = None) -> Rollback:
        """Take the version in service out (``rolled_back``) and put back the one deployed
        before it, all in one transaction that holds the deployment lock; returns what it did.

        Two rollbacks at once run one after the other (each rolls back what is deployed when
        its turn comes). With ``expected`` (compare-and-set), a rollback refuses
        (``REGISTRY_STATE_CONFLICT``) unless that version is the one in service then."""
        notes = need_notes(notes, "a rollback")
        with self.engine.begin() as conn:
            _serialize(conn)
            current = conn.execute(
                select(model_registry.c.model_version)
                .where(model_registry.c.status == _S.DEPLOYED.value)
                .with_for_update()
            ).scalar()
            if expected is not None and current != expected:
                raise RegistryError(
                    "REGISTRY_STATE_CONFLICT",
                    f"{expected} is no longer deployed ({current or 'none'} is): nothing rolled "
                    "back; see `mlcore registry list` and decide again",
                )
            if current is None:
                raise RegistryError(
                    "REGISTRY_STATE_NO_ROLLBACK_TARGET",
                    "no version is deployed: nothing to roll back",
                )
            previous = conn.execute(
                select(model_registry.c.model_version)
                .where(model_registry.c.status == _S.APPROVED.value)
                .where(model_registry.c.deployed_at.is_not(None))
                .order_by(model_registry.c.deployed_at.desc())
                .limit(1)
                .with_for_update()
            ).scalar()
            if previous is None:
                raise RegistryError(
                    "REGISTRY_STATE_NO_ROLLBACK_TARGET",
                    f"{current} is deployed but no earlier deployed version is kept to roll back "
                    "to",
                )
            stamp = now()
            self._set(conn, current, _S.ROLLED_BACK, stamp, None, notes)
            self._set(conn, previous, _S.DEPLOYED, stamp, None, notes)
            details = {"from": current, "to": previous}
            write_audit(
                conn,
                AuditEvent.CONFIG_ROLLBACK,
                current,
                _S.DEPLOYED,
                _S.ROLLED_BACK,
                notes,
                actor,
                details,
            )
            write_audit(
                conn,
                AuditEvent.CONFIG_ROLLBACK,
                previous,
                _S.APPROVED,
                _S.DEPLOYED,
                notes,
                actor,
                details,
            )
            return Rollback(rolled_back=current, deployed=self._read(conn, previous))

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _locked(conn: Connection, version: str) -> ModelStatus:
        status = conn.execute(
            select(model_registry.c.status)
            .where(model_registry.c.model_version == version)
            .with_for_update()
        ).scalar()
        if status is None:
            raise not_registered(version)
        return ModelStatus(status)

    @staticmethod
    def _check(version: str, current: ModelStatus, to: ModelStatus) -> None:
        allowed = TRANSITIONS[current]
        if to not in allowed:
            shown = ", ".join(allowed) if allowed else "nothing (final)"
            raise RegistryError(
                "REGISTRY_STATE_INVALID_TRANSITION",
                f"{version} is {current}: it can go to {shown}, not {to}",
            )

    @staticmethod
    def _set(
        conn: Connection, version: str, status: ModelStatus, stamp: datetime,
        theta: tuple[float, float] | None, notes: str,
    ) -> None:  # fmt: skip
        # ``notes`` holds the reason for the status in force (every earlier one is in the audit).
        values: dict[str, Any] = {"status": status.value, "updated_at": stamp, "notes": notes}
        if status is _S.DEPLOYED:
            values["deployed_at"] = stamp
        if theta is not None:
            values["theta1"], values["theta2"] = _theta_columns(theta)
        conn.execute(
            update(model_registry).where(model_registry.c.model_version == version).values(**values)
        )
