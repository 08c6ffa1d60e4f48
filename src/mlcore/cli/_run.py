"""``mlcore demo`` (the whole pipeline on generated data) and ``mlcore serve`` (the
inference workers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from mlcore.cli._app import app, coded, command, load_config
from mlcore.cli._models import UnregisteredOpt
from mlcore.cli._params import SEED_MAX, BarSource, parse_timeframe
from mlcore.cli._render import (
    print_backtest,
    print_demo,
    print_demo_end,
    print_serve,
    print_theta,
    print_train,
    text,
)
from mlcore.errors import ConfigError

if TYPE_CHECKING:
    from mlcore.config import AppConfig

# As mlcore.demo.DEMO_MONTHS_RANGE (not imported here: it loads pandas; a test checks they agree).
DEMO_MONTHS_MIN, DEMO_MONTHS_MAX = 8, 120


def demo_config() -> AppConfig:
    """The demo's configuration: a fresh workspace of its own (var/demo of the project whose
    shipped configs are in force) over the shipped configs alone, its archive its own."""
    from mlcore.cli._app import shared
    from mlcore.cli._workspace import shipped_root
    from mlcore.config import check_archive, fresh_demo_workspace
    from mlcore.config import load_config as load

    ws = fresh_demo_workspace(shipped_root())
    cfg = load(ws.configs, shared().config_env)
    check_archive(cfg.paths)
    return cfg


@command(app, "demo")
def demo(
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="Seed of the generated market.")
    ] = 7,
    months: Annotated[
        int,
        typer.Option(
            min=DEMO_MONTHS_MIN,
            max=DEMO_MONTHS_MAX,
            help="Length of the generated market in months, ending 2024-12 (fewer: quicker).",
        ),
    ] = 24,
) -> None:
    """Run the whole pipeline built so far on the embedded default with generated data, in a
    workspace of its own (var/demo of the project, made anew): it never reads a user's
    workspace or archive (nor ARCHIVE_PATH)."""
    from mlcore import flows
    from mlcore.demo import run_demo

    flows.console_without_tracebacks()
    cfg = demo_config()
    text(f"ml-assets-core demo — SERVICE_ENV={cfg.env_name}, workspace {cfg.config_root.parent}, "
         f"archive {cfg.paths.archive}")  # fmt: skip
    text(f"started {datetime.now(UTC).isoformat(timespec='seconds')}")
    result = run_demo(cfg, seed=seed, months=months)
    print_demo(result)
    if result.training is not None:
        print_train(result.training)
    if result.backtest is not None:
        print_theta(result.backtest.theta_run)
        print_backtest(result.backtest)
    print_demo_end(result)
    if not result.all_caught:
        raise typer.Exit(1)


@command(app, "serve")
def serve_cmd(
    model: Annotated[
        str | None,
        typer.Option(help="Serve this version (name or folder) instead of the deployed one."),
    ] = None,
    pairs: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated pair ids (default: the universe's pairs the version was "
            "trained on; the others skipped, one line each)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="Worker processes (default: pairs_per_worker)."),
    ] = None,
    replay_last: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=10_000_000,
            help="Replay the catalog's last N bars through the workers (warmed on the bars "
            "before them), then stop: the demo of live serving without a feed.",
        ),
    ] = None,
    exit_when_idle: Annotated[
        float | None,
        typer.Option(min=0.1, max=86_400.0, help="Stop after this many seconds without bars."),
    ] = None,
    bars: Annotated[
        BarSource | None,
        typer.Option(help="Bar source: redis or file (default: serving_policy.yaml bar_source)."),
    ] = None,
    timeframe: Annotated[
        str | None,
        typer.Option(
            "--timeframe",
            parser=parse_timeframe,
            metavar="TF",
            help="Serve this bar timeframe instead of serving_policy.yaml's (a version trained "
            "at another is refused): 1h, 1day; also 1H, hourly, 1d, daily.",
        ),
    ] = None,
    unregistered: UnregisteredOpt = False,
    force_rejected: Annotated[
        bool,
        typer.Option(
            "--force-rejected",
            help="Serve the --model version even though the registry rejected it (logged).",
        ),
    ] = False,
) -> None:
    """Run the inference workers: bars in (Redis Streams, or a JSON-lines file), signals out
    (Redis stream + Pub/Sub, signal.json, core.signals_live). Ctrl-C stops them cleanly."""
    from mlcore import serving
    from mlcore.cli._data import check_pairs, check_timeframe
    from mlcore.governance import require_in_force

    cfg = load_config()
    version = require_in_force(cfg)  # hand edits after a governed apply are refused
    if version is not None:
        text(f"config version {version.sha[:12]} in force")
    ids = [p.strip() for p in pairs.split(",")] if pairs is not None else None
    check_pairs(cfg, ids or [], "--pairs")  # empty items (``--pairs ,,``) and repeats refused
    if timeframe is not None:
        check_timeframe(cfg, timeframe)
    with coded(ConfigError, "SERVING_START_REFUSED"):
        summary = serving.serve(
            cfg, model=model, pair_ids=ids, workers=workers, replay_last=replay_last,
            exit_when_idle_seconds=exit_when_idle, bars=None if bars is None else str(bars),
            unregistered=unregistered, force_rejected=force_rejected, timeframe=timeframe,
        )  # fmt: skip
    print_serve(summary)
    if summary.given_up:
        from mlcore.errors import FatalError

        raise FatalError(
            "SERVING_WORKER_GIVEN_UP",
            f"workers {summary.given_up} kept dying and were not restarted again: their pairs "
            "were not served (alert CORE_SERVING_WORKER_GIVEN_UP; the log has each death)",
        )
