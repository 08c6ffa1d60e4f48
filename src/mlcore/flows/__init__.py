"""Flows stage: the spec's Prefect flows (retrain → backtest with θ → publish, as subflows),
their audit trail, retries, heartbeats and failure stop, and the cron deployment."""

import os

# Before Prefect reads its settings: no usage reports from its server (these machines have no
# network; its telemetry job only contends for the ephemeral SQLite database).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect waits 20 s for its ephemeral server to start; a busy 2-core host can take longer, and
# the run would fail before its first task.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from mlcore.flows._ephemeral import bind_ephemeral_server

# Before any flow runs: an ephemeral server started from now on ends with this process. With
# a server named, Prefect starts none (and its server code, seconds to import, stays unloaded).
if not os.environ.get("PREFECT_API_URL"):
    bind_ephemeral_server()

from mlcore.flows._flows import (
    PublishOutcome,
    RetrainOutcome,
    core_backtest_flow,
    core_publish_flow,
    core_retrain_flow,
    core_theta_opt_flow,
    task_runner,
)
from mlcore.flows._guard import (
    RETRAIN_FAILED,
    RETRAIN_HEARTBEAT,
    RETRAIN_ORPHANED,
    RETRAIN_SKIPPED,
    RETRAIN_STOPPED,
    RetrainRefused,
    RunGuard,
    begin_run,
    check_start,
)
from mlcore.flows._publish import SERVING_CHANNEL, CheckItem, Checklist, adoption_checklist
from mlcore.flows._retention import RetentionReport, apply_retention, signals_archive_dir
from mlcore.flows._serve import (
    DEPLOYMENT,
    console_without_tracebacks,
    retrain_deployment,
    run_retrain,
    serve_retrain,
)

__all__ = [
    "DEPLOYMENT",
    "RETRAIN_FAILED",
    "RETRAIN_HEARTBEAT",
    "RETRAIN_ORPHANED",
    "RETRAIN_SKIPPED",
    "RETRAIN_STOPPED",
    "SERVING_CHANNEL",
    "CheckItem",
    "Checklist",
    "PublishOutcome",
    "RetentionReport",
    "RetrainOutcome",
    "RetrainRefused",
    "RunGuard",
    "adoption_checklist",
    "apply_retention",
    "begin_run",
    "check_start",
    "console_without_tracebacks",
    "core_backtest_flow",
    "core_publish_flow",
    "core_retrain_flow",
    "core_theta_opt_flow",
    "retrain_deployment",
    "run_retrain",
    "serve_retrain",
    "signals_archive_dir",
    "task_runner",
]
