"""Retraining heartbeats and the alerts table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _audit() -> str | None:
    # ALTER TABLE is not covered by the engine's schema_translate_map: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else "audit"


def upgrade() -> None:
    # Plain ADD COLUMN: both databases do it in place (no batch copy of the table).
    op.add_column("retrain_runs", sa.Column("heartbeat_at", TS), schema=_audit())
    op.add_column("retrain_runs", sa.Column("flow_run_id", sa.String(36)), schema=_audit())
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(36), primary_key=True),
        sa.Column("raised_at", TS, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(36)),
        sa.Column("details", sa.JSON),
        schema="audit",
    )
    op.create_index("ix_alerts_raised_at", "alerts", ["raised_at"], schema="audit")


def downgrade() -> None:
    op.drop_index("ix_alerts_raised_at", "alerts", schema="audit")
    op.drop_table("alerts", schema="audit")
    op.drop_column("retrain_runs", "flow_run_id", schema=_audit())
    op.drop_column("retrain_runs", "heartbeat_at", schema=_audit())
