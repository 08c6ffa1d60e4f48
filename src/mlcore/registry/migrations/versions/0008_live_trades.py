"""The feedback loop: fills landed as live trades (``core.live_trades``, one row per fill id),
fills quarantined with their reason (``core.fills_quarantine``) and the live KPIs
(``core.live_kpis``).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "live_trades",
        sa.Column("fill_id", sa.String(64), primary_key=True),
        sa.Column("signal_id", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("pair_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("side", sa.SmallInteger, nullable=False),
        sa.Column("filled_at", TS, nullable=False),
        sa.Column("signal_ts", TS, nullable=False),
        sa.Column("legs", sa.JSON, nullable=False),
        sa.Column("notional_usd", sa.Float, nullable=False),
        sa.Column("slippage_bps", sa.Float, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("expected_cost_usd", sa.Float, nullable=False),
        sa.Column("entry_fill_id", sa.String(64)),
        sa.Column("pnl_usd", sa.Float),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("raw", sa.JSON, nullable=False),
        schema="core",
    )
    op.create_index("ix_core_live_trades_signal_id", "live_trades", ["signal_id"], schema="core")
    op.create_index("ix_live_trades_version_pair", "live_trades",
                    ["model_version", "pair_id", "filled_at"], schema="core")  # fmt: skip
    # An exit's entry is looked up as "not closed yet": by entry_fill_id.
    op.create_index("ix_live_trades_entry_fill_id", "live_trades", ["entry_fill_id"],
                    schema="core")  # fmt: skip
    op.create_table(
        "fills_quarantine",
        sa.Column("quarantine_id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fill_id", sa.String(64)),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        schema="core",
    )
    op.create_table(
        "live_kpis",
        sa.Column("pair_id", sa.String(32), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("window_days", sa.Integer, primary_key=True),
        sa.Column("computed_at", TS, primary_key=True),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("n_trades", sa.Integer, nullable=False),
        sa.Column("n_bars", sa.Integer, nullable=False),
        sa.Column("kpis", sa.JSON, nullable=False),
        schema="core",
    )


def downgrade() -> None:
    op.drop_table("live_kpis", schema="core")
    op.drop_table("fills_quarantine", schema="core")
    op.drop_index("ix_live_trades_entry_fill_id", table_name="live_trades", schema="core")
    op.drop_index("ix_live_trades_version_pair", table_name="live_trades", schema="core")
    op.drop_index("ix_core_live_trades_signal_id", table_name="live_trades", schema="core")
    op.drop_table("live_trades", schema="core")
