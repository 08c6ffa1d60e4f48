"""Registry stage: model versions with their lineage and status (a state machine with an audit
trail), retraining runs, alerts and the artifact store, on SQLite (embedded default) or
PostgreSQL, one SQLAlchemy + Alembic code path."""

from pathlib import Path

import sqlalchemy.exc

from mlcore.config import AppConfig
from mlcore.errors import ConfigError, FatalError
from mlcore.registry._alerts import (
    Alerts,
    NotifyStatus,
    NotifyTarget,
    alert_scope,
    dedup_key,
)
from mlcore.registry._artifacts import Artifacts, failing_files
from mlcore.registry._audit import AuditTrail, ChainReport
from mlcore.registry._chain import Break
from mlcore.registry._db import artifact_store, database_url, make_engine, upgrade
from mlcore.registry._errors import RegistryError, RegistryUnavailable, check_connection
from mlcore.registry._rebuild import RebuildReport, rebuild
from mlcore.registry._records import (
    TRANSITIONS,
    ActionRecord,
    ActionResult,
    Alert,
    AuditEvent,
    ModelRecord,
    ModelStatus,
    RetrainRun,
    Rollback,
    RunStatus,
    StatusChange,
)
from mlcore.registry._registry import Registry
from mlcore.registry._runs import RetrainRuns
from mlcore.registry._state_at import Changed, ConfigVersionAt, StateAt, state_at
from mlcore.registry._store import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    damaged_files,
    restore_folder,
)
from mlcore.registry._tables import (
    RUN_STATUSES,
    STATUSES,
    bars_refused,
    fills_quarantine,
    live_kpis,
    live_trades,
    metadata,
    model_registry,
    notifications,
    signals_history,
    signals_live,
)
from mlcore.registry._trust import CheckedModel, check_model
from mlcore.registry._versions import Versions, version_row

__all__ = [
    "RUN_STATUSES",
    "STATUSES",
    "TRANSITIONS",
    "ActionRecord",
    "ActionResult",
    "Alert",
    "Alerts",
    "ArtifactStore",
    "Artifacts",
    "AuditEvent",
    "AuditTrail",
    "Break",
    "ChainReport",
    "Changed",
    "CheckedModel",
    "ConfigVersionAt",
    "LocalArtifactStore",
    "ModelRecord",
    "ModelStatus",
    "NotifyStatus",
    "NotifyTarget",
    "RebuildReport",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "RetrainRun",
    "RetrainRuns",
    "Rollback",
    "RunStatus",
    "S3ArtifactStore",
    "StateAt",
    "StatusChange",
    "Versions",
    "alert_scope",
    "artifact_store",
    "bars_refused",
    "check_connection",
    "check_model",
    "damaged_files",
    "database_url",
    "dedup_key",
    "failing_files",
    "fills_quarantine",
    "live_kpis",
    "live_trades",
    "make_engine",
    "metadata",
    "model_registry",
    "notifications",
    "open_registry",
    "rebuild",
    "registry_for",
    "restore_folder",
    "signals_history",
    "signals_live",
    "state_at",
    "upgrade",
    "version_row",
]


def open_registry(url: str, store: ArtifactStore | Path | None = None) -> Registry:
    """The registry at ``url``, migrated to the newest schema, archiving model versions in
    ``store`` (a store, or a local folder) if given. ``RegistryUnavailable`` (retryable) if the
    database does not answer; ``ConfigError`` ``REGISTRY_DB_UNUSABLE`` (exit 2) when the SQLite
    file's place holds something else (a folder); ``FatalError`` ``REGISTRY_DB_CORRUPT`` (exit
    1) when the file is not a usable database. Any other error keeps its own type."""
    where = url
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        where = str(path)
        for place, kind in ((path.parent, "folder"), (path, "file")):
            if place.exists() and not (place.is_dir() if kind == "folder" else place.is_file()):
                raise ConfigError(
                    "REGISTRY_DB_UNUSABLE",
                    f"registry database {path}: {place} is not a {kind}; move it aside",
                )
    try:
        engine = make_engine(url)
        check_connection(engine)
        upgrade(engine)
    except sqlalchemy.exc.DatabaseError as exc:
        if isinstance(exc, sqlalchemy.exc.OperationalError) or where == url:
            raise  # does not answer (or locked): retryable where the caller says so
        first = str(exc.orig or exc).strip().splitlines()
        raise FatalError(
            "REGISTRY_DB_CORRUPT",
            f"registry database {where} is not a usable database "
            f"({first[0] if first else type(exc).__name__}); restore it from a backup or move "
            "it aside",
        ) from None
    if isinstance(store, Path):
        store = LocalArtifactStore(store)
    return Registry(engine, store)


def registry_for(cfg: AppConfig) -> Registry:
    """The registry the configuration names (database and artifact store)."""
    return open_registry(database_url(cfg), artifact_store(cfg))
