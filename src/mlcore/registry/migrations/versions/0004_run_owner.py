"""Retraining runs: the process that runs them (``owner``), so that a run whose process died is
recognised at once on its host instead of after its heartbeat goes stale.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _audit() -> str | None:
    # ALTER TABLE is not covered by the engine's schema_translate_map: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else "audit"


def upgrade() -> None:
    op.add_column("retrain_runs", sa.Column("owner", sa.Text), schema=_audit())


def downgrade() -> None:
    op.drop_column("retrain_runs", "owner", schema=_audit())
