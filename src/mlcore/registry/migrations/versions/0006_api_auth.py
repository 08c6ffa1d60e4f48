"""The Ops API: its users (role, duty, TOTP secret and last used step), their tokens (sha256
only) and the two-person resume requests.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("duty", sa.String(8), nullable=False),
        sa.Column("totp_secret", sa.Text),
        sa.Column("totp_last_step", sa.BigInteger),
        sa.Column("created_at", TS, nullable=False),
        schema="core",
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        schema="core",
    )
    op.create_table(
        "resume_requests",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("requester_duty", sa.String(8), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("approver", sa.String(64)),
        sa.Column("approved_at", TS),
        sa.Column("canary_pairs", sa.JSON),
        sa.Column("rest_pairs", sa.JSON),
        sa.Column("advanced_by", sa.String(64)),
        sa.Column("advanced_at", TS),
        schema="core",
    )


def downgrade() -> None:
    op.drop_table("resume_requests", schema="core")
    op.drop_table("api_tokens", schema="core")
    op.drop_table("api_users", schema="core")
