"""The registry's tables (SQLAlchemy Core): one definition for SQLite (the embedded default) and
PostgreSQL. PostgreSQL keeps them in the schemas ``core`` and ``audit``; SQLite has no schemas,
so an engine for it maps both to the main database (``schema_translate_map``)."""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from mlcore.registry._records import ModelStatus, RunStatus

metadata = MetaData()

# The stored strings (the values of ModelStatus and RunStatus), for messages and options.
STATUSES: Final = tuple(s.value for s in ModelStatus)
RUN_STATUSES: Final = tuple(s.value for s in RunStatus)

model_registry = Table(
    "model_registry",
    metadata,
    Column("model_version", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deployed_at", DateTime(timezone=True)),
    Column("timeframe", String(8), nullable=False),
    Column("train_period_start", Date),
    Column("train_period_end", Date),
    Column("dataset_index_path", Text, nullable=False),
    Column("feature_schema_path", Text, nullable=False),
    Column("model_ai1_path", Text, nullable=False),
    Column("model_ai2_path", Text, nullable=False),
    Column("model_ai3_path", Text, nullable=False),
    Column("params_yaml_path", Text, nullable=False),
    Column("artifact_path", Text, nullable=False),
    Column("metrics_json", JSON, nullable=False),
    Column("checksums_json", JSON, nullable=False),
    Column("theta1", Numeric(6, 4)),
    Column("theta2", Numeric(6, 4)),
    Column("code_hash", Text, nullable=False),
    Column("data_hash", Text, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("notes", Text, nullable=False),
    schema="core",
)

retrain_runs = Table(
    "retrain_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),
    Column("retry_count", SmallInteger, nullable=False),
    Column("model_version", String(64)),
    Column("theta1", Numeric(6, 4)),
    Column("theta2", Numeric(6, 4)),
    Column("metrics", JSON),
    Column("log_path", Text),
    Column("error_message", Text),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("flow_run_id", String(36)),
    Column("owner", Text),  # the process running it (migration 0004)
    schema="audit",
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(36), primary_key=True),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("channel", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("run_id", String(36)),
    Column("details", JSON),
    schema="audit",
)

# The notification outbox: one row per alert and destination, delivered with retries (0007).
notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("alert_id", String(36), nullable=False),
    # The destination (slack, pagerduty): rows of one target are delivered in order.
    Column("target", String(16), nullable=False),
    # The Slack channel the policy routed it to, written when it is sent.
    Column("channel", Text),
    Column("dedup_key", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("delivered_at", DateTime(timezone=True)),
    # The body sent (without the routing key), written when it is sent.
    Column("payload", JSON),
    Column("claimed_by", String(36)),
    Column("claimed_until", DateTime(timezone=True)),
    UniqueConstraint("alert_id", "target", name="uq_notifications_alert_target"),
    schema="audit",
)

config_changes = Table(
    "config_changes",
    metadata,
    Column(
        "change_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("event", String(32), nullable=False),
    Column("model_version", String(64)),
    Column("old_status", String(16)),
    Column("new_status", String(16)),
    Column("notes", Text, nullable=False),
    Column("details", JSON),
    # The hash chain (migration 0005): see mlcore.registry._chain.
    Column("prev_hash", String(64)),
    Column("row_hash", String(64)),
    schema="audit",
)

analytics_actions = Table(
    "analytics_actions",
    metadata,
    Column(
        "action_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("request_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("before", JSON),
    Column("after", JSON),
    Column("result", String(16), nullable=False),
    Column("details", JSON),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False),
    schema="audit",
)

_SIGNAL_COLUMNS = (
    ("signal_id", String(64)),
    ("ts", DateTime(timezone=True)),
    ("pair_id", String(32)),
    ("model_version", String(64)),
    ("action", String(16)),
    ("side", SmallInteger),
    ("return_prob", Numeric(8, 6)),
    ("risk_score", Numeric(8, 6)),
    ("position_scale", Numeric(8, 6)),
    ("theta1", Numeric(6, 4)),
    ("theta2", Numeric(6, 4)),
    ("payload", JSON),
    ("inference_seconds", Float),  # the decision's compute time in the worker (0009)
)


_NULLABLE_SIGNAL_COLUMNS = frozenset({"payload", "return_prob", "inference_seconds"})


def _signals(name: str) -> Table:
    # return_prob is NULL where AI1 is not asked (migration 0003).
    cols = [Column(n, t, primary_key=(n == "signal_id"), nullable=n in _NULLABLE_SIGNAL_COLUMNS)
            for n, t in _SIGNAL_COLUMNS]  # fmt: skip
    return Table(name, metadata, *cols, schema="core")


signals_live = _signals("signals_live")
signals_history = _signals("signals_history")

SQLITE_SCHEMAS: Final = {"core": None, "audit": None}

# The Ops API's people, their tokens and the resume requests (migration 0006).
api_users = Table(
    "api_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("duty", String(8), nullable=False),
    Column("totp_secret", Text),  # approver and admin only
    Column("totp_last_step", BigInteger),  # the newest TOTP time step used (no replay)
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema="core",
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("user_name", String(64), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    schema="core",
)

resume_requests = Table(
    "resume_requests",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("requester", String(64), nullable=False),
    Column("requester_duty", String(8), nullable=False),
    Column("body", JSON, nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("approver", String(64)),
    Column("approved_at", DateTime(timezone=True)),
    Column("canary_pairs", JSON),
    Column("rest_pairs", JSON),
    Column("advanced_by", String(64)),
    Column("advanced_at", DateTime(timezone=True)),
    schema="core",
)

# The feedback loop (migration 0008): fills landed as live trades, fills quarantined with their
# reason, and the live KPIs computed from them.
live_trades = Table(
    "live_trades",
    metadata,
    Column("fill_id", String(64), primary_key=True),
    Column("signal_id", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("pair_id", String(32), nullable=False),
    Column("action", String(8), nullable=False),
    Column("side", SmallInteger, nullable=False),
    Column("filled_at", DateTime(timezone=True), nullable=False),
    Column("signal_ts", DateTime(timezone=True), nullable=False),
    Column("legs", JSON, nullable=False),
    Column("notional_usd", Float, nullable=False),
    Column("slippage_bps", Float, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("expected_cost_usd", Float, nullable=False),
    Column("entry_fill_id", String(64)),
    Column("pnl_usd", Float),
    Column("source", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("raw", JSON, nullable=False),
    schema="core",
)

fills_quarantine = Table(
    "fills_quarantine",
    metadata,
    Column("quarantine_id", String(64), primary_key=True),
    Column("source", String(16), nullable=False),
    Column("location", Text, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("fill_id", String(64)),
    Column("raw", LargeBinary, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    schema="core",
)

live_kpis = Table(
    "live_kpis",
    metadata,
    Column("pair_id", String(32), primary_key=True),  # "*": the whole book
    Column("model_version", String(64), primary_key=True),
    Column("window_days", Integer, primary_key=True),
    Column("computed_at", DateTime(timezone=True), primary_key=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("n_trades", Integer, nullable=False),
    Column("n_bars", Integer, nullable=False),
    Column("kpis", JSON, nullable=False),
    schema="core",
)

# Bar messages the serving workers refused (their dead letters, without the raw bytes, which stay
# in the worker's outbox and the dead-letter stream), for the live KPIs (migration 0009).
bars_refused = Table(
    "bars_refused",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("worker_id", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("position", Text, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("refused_at", DateTime(timezone=True), nullable=False),
    Column("symbol", String(32)),  # where the bar named a universe symbol
    Column("bar_ts", DateTime(timezone=True)),  # and its bar time
    schema="core",
)
