"""The live KPIs' service figures: each served signal's inference time
(``inference_seconds`` on ``core.signals_live`` and ``core.signals_history``) and the bar
messages the workers refused (``core.bars_refused``, their dead letters without the raw bytes).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
TABLES = ("signals_live", "signals_history")


def _core() -> str | None:
    return None if op.get_bind().dialect.name == "sqlite" else "core"


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=_core()) as batch:
            batch.add_column(sa.Column("inference_seconds", sa.Float, nullable=True))
    op.create_table(
        "bars_refused",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("position", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("refused_at", TS, nullable=False),
        sa.Column("symbol", sa.String(32)),
        sa.Column("bar_ts", TS),
        schema="core",
    )
    op.create_index("ix_bars_refused_refused_at", "bars_refused", ["refused_at"], schema="core")


def downgrade() -> None:
    op.drop_index("ix_bars_refused_refused_at", "bars_refused", schema="core")
    op.drop_table("bars_refused", schema="core")
    for table in TABLES:
        with op.batch_alter_table(table, schema=_core()) as batch:
            batch.drop_column("inference_seconds")
