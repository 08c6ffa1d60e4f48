"""The notification outbox: one row per alert and destination (Slack, PagerDuty), delivered
with retries until the receiver takes it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("channel", sa.Text),
        sa.Column("dedup_key", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", TS),
        sa.Column("payload", sa.JSON),
        sa.Column("claimed_by", sa.String(36)),
        sa.Column("claimed_until", TS),
        sa.UniqueConstraint("alert_id", "target", name="uq_notifications_alert_target"),
        schema="audit",
    )
    # A notifier reads the head of one target's open rows (target, status, created_at order).
    op.create_index("ix_notifications_queue", "notifications",
                    ["target", "status", "created_at"], schema="audit")  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_notifications_queue", table_name="notifications", schema="audit")
    op.drop_table("notifications", schema="audit")
