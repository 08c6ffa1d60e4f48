"""Running the flows: once in ephemeral mode (no server), or served as a cron deployment
against a Prefect server."""

from __future__ import annotations

import os

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from mlcore.config import AppConfig
from mlcore.flows._flows import RetrainOutcome, core_retrain_flow, task_runner

DEPLOYMENT = "core-retrain"


def run_retrain(
    cfg: AppConfig, *, timeframe: str | None = None, seed: int | None = None
) -> RetrainOutcome:
    """One retraining run now, in this process, with the task runner retrain_policy.yaml
    names (Prefect's ephemeral mode unless PREFECT_API_URL points at a server)."""
    retrain = core_retrain_flow.with_options(task_runner=task_runner(cfg.retrain.task_runner))
    outcome: RetrainOutcome = retrain(
        config_root=str(cfg.config_root), config_env=cfg.env_name, timeframe=timeframe, seed=seed
    )
    return outcome


def retrain_deployment(cfg: AppConfig, cron: str | None = None) -> RunnerDeployment:
    """The cron deployment of ``core_retrain_flow`` (retrain_policy.yaml's retrain_cron and
    timezone unless ``cron`` is given), on this configuration."""
    retrain = core_retrain_flow.with_options(task_runner=task_runner(cfg.retrain.task_runner))
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
        raise ValueError(
            "PREFECT_API_URL is not set: start a server (`prefect server start --host "
            "127.0.0.1`) and set PREFECT_API_URL=http://127.0.0.1:4200/api; cron schedules need "
            "a server, ephemeral mode has no scheduler"
        )
    serve(retrain_deployment(cfg, cron), print_starting_message=False)
