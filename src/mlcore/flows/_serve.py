"""Running the flows: once in ephemeral mode (no server), or served as a cron deployment
against a Prefect server."""

from __future__ import annotations

import logging
import os
import sys

from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from mlcore.config import AppConfig
from mlcore.errors import ConfigError
from mlcore.flows._flows import RetrainOutcome, core_retrain_flow, task_runner
from mlcore.flows._guard import check_start
from mlcore.registry import registry_for

DEPLOYMENT = "core-retrain"


class _ServerMissing(ConfigError, ValueError):
    """No Prefect server to serve a cron deployment (a ``ValueError`` as before it had a code)."""

    str_with_code = False


def _retrain_flow(cfg: AppConfig) -> Flow[..., RetrainOutcome]:
    return core_retrain_flow.with_options(task_runner=task_runner(cfg.retrain.task_runner))


def run_retrain(
    cfg: AppConfig, *, timeframe: str | None = None, seed: int | None = None,
    reason: str | None = None,
) -> RetrainOutcome:  # fmt: skip
    """One retraining run now, in this process, with the task runner retrain_policy.yaml
    names (Prefect's ephemeral mode unless PREFECT_API_URL points at a server).

    A run that may not start is refused before Prefect starts (``RetrainRefused``); runs whose
    process is gone are aborted first (:func:`~mlcore.flows._guard.check_start`)."""
    tf = timeframe or cfg.retrain.timeframe
    cfg.core.labels_at(tf)  # refused before Prefect starts, not inside a task
    cfg.backtest.execution_at(tf)
    check_start(registry_for(cfg), cfg.retrain, reason)
    retrain = _retrain_flow(cfg)
    outcome: RetrainOutcome = retrain(
        config_root=str(cfg.config_root), config_env=cfg.env_name, timeframe=timeframe, seed=seed,
        reason=reason,
    )  # fmt: skip
    return outcome


def retrain_deployment(cfg: AppConfig, cron: str | None = None) -> RunnerDeployment:
    """The cron deployment of ``core_retrain_flow`` (retrain_policy.yaml's retrain_cron and
    timezone unless ``cron`` is given), on this configuration."""
    retrain = _retrain_flow(cfg)
    deployment = retrain.to_deployment(
        name=DEPLOYMENT,
        schedule=Cron(cron or cfg.retrain.retrain_cron, timezone=cfg.retrain.timezone),
        parameters={"config_root": str(cfg.config_root), "config_env": cfg.env_name},
        description="Monthly retraining: catalog → features → train → backtest → θ → publish.",
        tags=["ml-assets-core", cfg.env_name],
    )
    if not isinstance(deployment, RunnerDeployment):  # called from async code
        raise TypeError("retrain_deployment must be called from synchronous code")
    return deployment


def serve_retrain(cfg: AppConfig, cron: str | None = None) -> None:
    """Serve the cron deployment until stopped (needs PREFECT_API_URL: a Prefect server)."""
    if not os.environ.get("PREFECT_API_URL"):
        raise _ServerMissing(
            "FLOWS_SERVER_MISSING",
            "PREFECT_API_URL is not set: start a server (`prefect server start --host "
            "127.0.0.1`) and set PREFECT_API_URL=http://127.0.0.1:4200/api; cron schedules need "
            "a server, ephemeral mode has no scheduler",
        )
    # Prefect's own flow-run heartbeats too (the server can then mark a dead run crashed);
    # the flow runs in a subprocess that reads this setting at start.
    beat_s = max(30, round(cfg.retrain.heartbeat_seconds))
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(beat_s))
    serve(retrain_deployment(cfg, cron), print_starting_message=False)


class _NoTraceback(logging.Formatter):
    """Prefect's console format without the traceback (the error itself stays on its line)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def console_without_tracebacks() -> None:
    """Keep Prefect's console lines but drop the tracebacks it prints with a failed run (a
    command line shows one clear error; the Prefect server's run logs keep them): on its own
    console handler and on any handler writing to the terminal (the command's plain root
    handler, to which Prefect's loggers propagate)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    consoles = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    loggers = [logging.getLogger()] + [
        lg for name, lg in logging.Logger.manager.loggerDict.items()
        if name.startswith("prefect") and isinstance(lg, logging.Logger)
    ]  # fmt: skip
    for logger in loggers:
        for handler in logger.handlers:
            on_console = isinstance(handler, PrefectConsoleHandler) or (
                isinstance(handler, logging.StreamHandler)
                and any(handler.stream is c for c in consoles)
            )
            if on_console and not isinstance(handler.formatter, _NoTraceback):
                handler.setFormatter(_NoTraceback(handler.formatter))
