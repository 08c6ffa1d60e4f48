"""Alembic environment: run on the connection the caller passes in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from mlcore.registry._tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    include_schemas=connection.dialect.name != "sqlite",
    version_table_schema="audit" if connection.dialect.name != "sqlite" else None,
)
with context.begin_transaction():
    context.run_migrations()
