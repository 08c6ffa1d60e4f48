"""The audit trail no one can rewrite: ``audit.analytics_actions`` (who did what through the
Ops API, the drawdown guard, the config workflow), a hash chain over it and over
``audit.config_changes`` (the existing rows chained here, in id order), and triggers on both
databases refusing UPDATE and DELETE of either table.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mlcore.registry._chain import GENESIS, row_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
TABLES = ("config_changes", "analytics_actions")


def _audit() -> str | None:
    # ALTER TABLE is not covered by the engine's schema_translate_map: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else "audit"


def _backfill() -> None:
    """Chain the rows written before this migration, oldest first (before the triggers)."""
    changes = sa.table(
        "config_changes",
        sa.column("change_id", sa.BigInteger), sa.column("changed_at", TS),
        sa.column("actor", sa.Text), sa.column("event", sa.String),
        sa.column("model_version", sa.String), sa.column("old_status", sa.String),
        sa.column("new_status", sa.String), sa.column("notes", sa.Text),
        sa.column("details", sa.JSON), sa.column("prev_hash", sa.String),
        sa.column("row_hash", sa.String), schema=_audit(),
    )  # fmt: skip
    bind = op.get_bind()
    prev = GENESIS
    rows = [dict(r._mapping) for r in bind.execute(sa.select(changes).order_by("change_id"))]
    for row in rows:
        row["prev_hash"] = prev
        prev = row_hash(row)
        bind.execute(
            changes.update()
            .where(changes.c.change_id == row["change_id"])
            .values(prev_hash=row["prev_hash"], row_hash=prev)
        )


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit.refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are never changed or removed; record a new row instead';
END
$$
"""


def _triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for name in TABLES:
            op.execute(
                f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE ON audit.{name} "
                "FOR EACH ROW EXECUTE FUNCTION audit.refuse_rewrite()"
            )
            op.execute(
                f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON audit.{name} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_rewrite()"
            )
        return
    for name in TABLES:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {name}_no_{verb.lower()} BEFORE {verb} ON {name} BEGIN "
                f"SELECT RAISE(ABORT, 'audit.{name} is append-only: {verb} refused'); END"
            )


def upgrade() -> None:
    op.add_column("config_changes", sa.Column("prev_hash", sa.String(64)), schema=_audit())
    op.add_column("config_changes", sa.Column("row_hash", sa.String(64)), schema=_audit())
    op.create_table(
        "analytics_actions",
        sa.Column(
            "action_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        schema="audit",
    )
    for col in ("occurred_at", "action"):
        op.create_index(f"ix_analytics_actions_{col}", "analytics_actions", [col], schema="audit")
    op.create_index("ix_config_changes_changed_at", "config_changes", ["changed_at"],
                    schema="audit")  # fmt: skip
    _backfill()
    _triggers()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in TABLES:
        names = (f"{name}_no_update", f"{name}_no_delete") if sqlite else (
            f"{name}_append_only", f"{name}_no_truncate")  # fmt: skip
        for trigger in names:
            op.execute(
                f"DROP TRIGGER IF EXISTS {trigger}" + ("" if sqlite else f" ON audit.{name}")
            )
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS audit.refuse_rewrite()")
    op.drop_index("ix_config_changes_changed_at", "config_changes", schema="audit")
    op.drop_table("analytics_actions", schema="audit")
    op.drop_column("config_changes", "row_hash", schema=_audit())
    op.drop_column("config_changes", "prev_hash", schema=_audit())
