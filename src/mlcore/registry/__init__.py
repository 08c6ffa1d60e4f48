"""Registry stage: model versions with their lineage and status (a state machine with an audit
trail), on SQLite (embedded default) or PostgreSQL, one SQLAlchemy + Alembic code path."""

from mlcore.registry._db import database_url, make_engine, upgrade
from mlcore.registry._registry import (
    TRANSITIONS,
    ModelRecord,
    Registry,
    RegistryError,
    version_row,
)
from mlcore.registry._tables import STATUSES, metadata

__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "ModelRecord",
    "Registry",
    "RegistryError",
    "database_url",
    "make_engine",
    "metadata",
    "open_registry",
    "upgrade",
    "version_row",
]


def open_registry(url: str) -> Registry:
    """The registry at ``url``, migrated to the newest schema."""
    engine = make_engine(url)
    upgrade(engine)
    return Registry(engine)
