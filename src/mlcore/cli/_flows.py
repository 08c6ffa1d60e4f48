"""``mlcore flows``: run retraining now, serve its cron deployment, see runs and alerts."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from mlcore.cli._app import coded, command, load_config, typer_app
from mlcore.cli._models import ModelOpt, SeedOpt, checked_models
from mlcore.cli._params import TIMEFRAME_HELP, FlowName, parse_cron, parse_timeframe
from mlcore.cli._registry import ActorOpt, NotesOpt, open_registry, registry_call
from mlcore.cli._render import (
    out,
    print_backtest,
    print_retrain,
    print_theta,
    print_train,
    text,
    version_column,
)
from mlcore.errors import ConfigError, MlcoreError

R = TypeVar("R")
flows_app = typer_app(
    "Prefect flows: run retraining now, serve its cron deployment, see runs and alerts."
)


def _flow_call(fn: Callable[[], R]) -> R:
    """Flow failures as one clear line: the run is already recorded in audit.retrain_runs
    (refusals and registry errors carry their own codes)."""
    with coded(MlcoreError, "CORE_RETRAIN_FAILED", catch=(ValueError, OSError)):
        return fn()


def _check_server() -> None:
    """The Prefect server PREFECT_API_URL names is usable (none named: ephemeral mode)."""
    from mlcore.flows._server import check_prefect_server

    api = os.environ.get("PREFECT_API_URL")
    if api:
        check_prefect_server(api)


@command(flows_app, "run")
def flows_run(
    name: Annotated[
        FlowName, typer.Argument(help="retrain (the whole chain), backtest, theta or publish.")
    ],
    model: ModelOpt = None,
    timeframe: Annotated[
        str | None,
        typer.Option(
            parser=parse_timeframe,
            metavar="TF",
            help=f"Bars to train on (default: retrain_policy.yaml). {TIMEFRAME_HELP}",
        ),
    ] = None,
    seed: SeedOpt = None,
) -> None:
    """Run a flow once, now, in this process (Prefect ephemeral mode unless PREFECT_API_URL
    names a server). ``retrain`` goes from the catalog to a published version."""
    from mlcore import flows

    flows.console_without_tracebacks()
    cfg = load_config()
    _check_server()
    if name is FlowName.retrain:
        outcome = _flow_call(lambda: flows.run_retrain(cfg, timeframe=timeframe, seed=seed))
        if outcome.training is not None:
            print_train(outcome.training)
        if outcome.backtest is not None:
            print_theta(outcome.backtest.theta_run)
            print_backtest(outcome.backtest)
        print_retrain(outcome)
        if outcome.publish is not None and outcome.publish.notice_error is not None:
            raise outcome.publish.notice_error  # deployed; only the notice on Redis failed
        return
    # The flows work on registered versions: checked (restored or refused) as --model is.
    folder = checked_models(cfg, model, None, unregistered=False)[0].folder
    where = {"config_root": str(cfg.config_root), "config_env": cfg.env_name}
    if name is FlowName.theta:
        print_theta(_flow_call(lambda: flows.core_theta_opt_flow(folder.name, **where)))
    elif name is FlowName.backtest:
        rep = _flow_call(lambda: flows.core_backtest_flow(folder.name, **where))
        print_theta(rep.theta_run)
        print_backtest(rep)
    else:
        pub = _flow_call(lambda: flows.core_publish_flow(folder.name, **where))
        text(f"registry: {pub.model_version} is {pub.status} — {pub.checklist.notes()}")
        for where_ in pub.notified:
            text(f"serving notified: {where_}")
        if pub.notice_error is not None:
            raise pub.notice_error  # the registry change stands; only the notice on Redis failed


@command(flows_app, "serve")
def flows_serve(
    cron: Annotated[
        str | None,
        typer.Option(
            parser=parse_cron, help="Cron schedule instead of retrain_policy.yaml's retrain_cron."
        ),
    ] = None,
) -> None:
    """Serve the core_retrain_flow cron deployment until stopped (Ctrl-C). Needs a Prefect
    server: `prefect server start --host 127.0.0.1` and PREFECT_API_URL."""
    from mlcore import flows

    flows.console_without_tracebacks()
    cfg = load_config()
    _check_server()
    with coded(ConfigError, "CLI_ARGUMENT_INVALID", prefix=f"--cron {cron!r}: "):
        flows.retrain_deployment(cfg, cron)
    text(
        f"serving deployment core_retrain_flow/{flows.DEPLOYMENT} on "
        f"'{cron or cfg.retrain.retrain_cron}' ({cfg.retrain.timezone}); Ctrl-C stops"
    )
    with coded(ConfigError, "PREFECT_SERVER_MISSING"):
        flows.serve_retrain(cfg, cron)


@command(flows_app, "resume")
def flows_resume(
    notes: NotesOpt,
    actor: ActorOpt = "cli",
) -> None:
    """Resume retraining stopped after consecutive failures (recorded with the notes)."""
    reg = open_registry(load_config())
    failures = reg.consecutive_failures()
    registry_call(lambda: reg.resume_retraining(actor=actor, notes=notes))
    text(f"retraining resumed ({failures} consecutive failure(s) cleared)")


@command(flows_app, "status")
def flows_status(
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="How many runs and alerts to show.")
    ] = 10,
) -> None:
    """Recent retraining runs (audit.retrain_runs) and alerts (audit.alerts)."""
    cfg = load_config()
    reg = open_registry(cfg)
    runs = Table(title="retraining runs (newest first)")
    for col in ("run", "started", "ended", "status", "retries"):
        runs.add_column(col)
    version_column(runs)
    runs.add_column("error")
    for r in reg.runs()[:limit]:
        runs.add_row(
            r["run_id"][:8],
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
            "-" if r["ended_at"] is None else f"{r['ended_at']:%H:%M:%S}",
            r["status"],
            str(r["retry_count"]),
            r["model_version"] or "-",
            escape(r["error_message"] or ""),
        )
    out.print(runs)
    alerts = Table(title="alerts (newest first)")
    for col in ("raised", "code", "severity", "channel", "message"):
        alerts.add_column(col)
    for a in reg.alerts()[:limit]:
        alerts.add_row(
            f"{a['raised_at']:%Y-%m-%d %H:%M:%S}",
            a["code"],
            a["severity"],
            a["channel"],
            escape(a["message"]),
        )
    out.print(alerts)
    failures = reg.consecutive_failures()
    stopped = failures >= cfg.retrain.max_consecutive_failures
    text(
        f"consecutive failures: {failures}; retraining "
        f"{'STOPPED (mlcore flows resume --notes ...)' if stopped else 'enabled'}"
    )
