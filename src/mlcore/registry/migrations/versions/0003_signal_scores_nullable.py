"""Signals: ``return_prob`` may be NULL (AI1 is asked only where an event opens).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("signals_live", "signals_history")


def _core() -> str | None:
    return None if op.get_bind().dialect.name == "sqlite" else "core"


def upgrade() -> None:
    # batch_alter_table: SQLite cannot ALTER a column in place (the table is copied).
    for table in TABLES:
        with op.batch_alter_table(table, schema=_core()) as batch:
            batch.alter_column("return_prob", existing_type=sa.Numeric(8, 6), nullable=True)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=_core()) as batch:
            batch.alter_column("return_prob", existing_type=sa.Numeric(8, 6), nullable=False)
