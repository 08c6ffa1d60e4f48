"""The registry, audit and signal tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
THETA = sa.Numeric(6, 4)
SCORE = sa.Numeric(8, 6)


def _signals(name: str) -> None:
    op.create_table(
        name,
        sa.Column("signal_id", sa.String(64), primary_key=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("pair_id", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("side", sa.SmallInteger, nullable=False),
        sa.Column("return_prob", SCORE, nullable=False),
        sa.Column("risk_score", SCORE, nullable=False),
        sa.Column("position_scale", SCORE, nullable=False),
        sa.Column("theta1", THETA, nullable=False),
        sa.Column("theta2", THETA, nullable=False),
        sa.Column("payload", sa.JSON),
        schema="core",
    )
    op.create_index(f"ix_{name}_pair_ts", name, ["pair_id", "ts"], schema="core")


def upgrade() -> None:
    op.create_table(
        "model_registry",
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deployed_at", TS),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("train_period_start", sa.Date),
        sa.Column("train_period_end", sa.Date),
        sa.Column("dataset_index_path", sa.Text, nullable=False),
        sa.Column("feature_schema_path", sa.Text, nullable=False),
        sa.Column("model_ai1_path", sa.Text, nullable=False),
        sa.Column("model_ai2_path", sa.Text, nullable=False),
        sa.Column("model_ai3_path", sa.Text, nullable=False),
        sa.Column("params_yaml_path", sa.Text, nullable=False),
        sa.Column("artifact_path", sa.Text, nullable=False),
        sa.Column("metrics_json", sa.JSON, nullable=False),
        sa.Column("checksums_json", sa.JSON, nullable=False),
        sa.Column("theta1", THETA),
        sa.Column("theta2", THETA),
        sa.Column("code_hash", sa.Text, nullable=False),
        sa.Column("data_hash", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'candidate', 'approved', 'rejected', 'deployed', 'rolled_back')",
            name="ck_model_registry_status",
        ),
        schema="core",
    )
    op.create_index("ix_model_registry_status", "model_registry", ["status"], schema="core")
    # At most one version in service, whatever the code above it does.
    op.create_index(
        "uq_model_registry_one_deployed", "model_registry", ["status"], unique=True,
        schema="core", postgresql_where=sa.text("status = 'deployed'"),
        sqlite_where=sa.text("status = 'deployed'"),
    )  # fmt: skip
    op.create_table(
        "retrain_runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retry_count", sa.SmallInteger, nullable=False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("theta1", THETA),
        sa.Column("theta2", THETA),
        sa.Column("metrics", sa.JSON),
        sa.Column("log_path", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.CheckConstraint(
            "status IN ('running', 'success', 'failed', 'retrying', 'aborted')",
            name="ck_retrain_runs_status",
        ),
        schema="audit",
    )
    op.create_table(
        "config_changes",
        sa.Column(
            "change_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("old_status", sa.String(16)),
        sa.Column("new_status", sa.String(16)),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("details", sa.JSON),
        schema="audit",
    )
    _signals("signals_live")
    _signals("signals_history")


def downgrade() -> None:
    for name in ("signals_history", "signals_live", "model_registry"):
        op.drop_table(name, schema="core")
    for name in ("config_changes", "retrain_runs"):
        op.drop_table(name, schema="audit")
