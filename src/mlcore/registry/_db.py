"""Which database holds the registry, and bringing it to the current schema with Alembic.

PostgreSQL when ``POSTGRES_URL`` is set (production), else a SQLite file under the archive (the
embedded default). The same tables, the same code, the same migrations for both."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text

from mlcore.config import AppConfig, sqlalchemy_postgres_url
from mlcore.registry._store import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from mlcore.registry._tables import SQLITE_SCHEMAS

#: Seconds PostgreSQL has to accept a connection (libpq's connect_timeout).
CONNECT_TIMEOUT_S = 10


def database_url(cfg: AppConfig) -> str:
    """``POSTGRES_URL`` (with the psycopg 3 driver), else ``sqlite:///{archive}/registry/registry.db``."""
    if cfg.env.postgres_url:
        return sqlalchemy_postgres_url(cfg.env.postgres_url)
    return f"sqlite:///{cfg.paths.archive / 'registry' / 'registry.db'}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder, foreign keys, WAL and a busy wait,
    so that several processes can write (one at a time) without losing anything."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _immediate(conn) -> None:  # type: ignore[no-untyped-def]
            # Take the write lock at BEGIN: two writers then queue instead of failing later.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        # pysqlite's own transaction handling must step aside for the BEGIN above.
        @event.listens_for(engine, "connect", insert=True)
        def _no_autobegin(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        return engine.execution_options(schema_translate_map=SQLITE_SCHEMAS)
    # A server that accepts but never answers (a wrong port) must not hang the command.
    return create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest migration (creating the schemas PostgreSQL needs)."""
    # Alembic (and its Mako templates) loads only here, when migrating: a serving worker
    # imports the registry and must stay light.
    from alembic import command
    from alembic.config import Config

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for schema in ("core", "audit"):
                conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
            # One migrator at a time, whichever process gets here first.
            conn.execute(text("SELECT pg_advisory_xact_lock(727271)"))
        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("mlcore.registry") / "migrations")
        )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def artifact_store(cfg: AppConfig) -> ArtifactStore:
    """The artifact store ml_core_storage.yaml names: a local folder or an S3-compatible bucket."""
    policy = cfg.ml_core_storage.artifact_store
    if policy.backend == "s3" and policy.s3 is not None:
        prefix = "/".join(
            p.strip("/") for p in (policy.s3.prefix, cfg.ml_core_storage.artifact_store_root) if p
        )
        return S3ArtifactStore.connect(policy.s3.endpoint_url, policy.s3.bucket, prefix)
    return LocalArtifactStore(cfg.paths.artifacts)
