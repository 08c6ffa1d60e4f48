"""Registry stage: model versions with their lineage and status (a state machine with an audit
trail), on SQLite (embedded default) or PostgreSQL, one SQLAlchemy + Alembic code path."""

from pathlib import Path

from mlcore.registry._db import database_url, make_engine, upgrade
from mlcore.registry._rebuild import RebuildReport, rebuild
from mlcore.registry._registry import (
    TRANSITIONS,
    ModelRecord,
    Registry,
    RegistryError,
    version_row,
)
from mlcore.registry._store import (
    ArtifactStore,
    LocalArtifactStore,
    damaged_files,
    restore_folder,
)
from mlcore.registry._tables import RUN_STATUSES, STATUSES, metadata

__all__ = [
    "RUN_STATUSES",
    "STATUSES",
    "TRANSITIONS",
    "ArtifactStore",
    "LocalArtifactStore",
    "ModelRecord",
    "RebuildReport",
    "Registry",
    "RegistryError",
    "damaged_files",
    "database_url",
    "make_engine",
    "metadata",
    "open_registry",
    "rebuild",
    "restore_folder",
    "upgrade",
    "version_row",
]


def open_registry(url: str, store_root: Path | None = None) -> Registry:
    """The registry at ``url``, migrated to the newest schema, archiving model versions under
    ``store_root`` (if given)."""
    engine = make_engine(url)
    upgrade(engine)
    return Registry(engine, LocalArtifactStore(store_root) if store_root is not None else None)
