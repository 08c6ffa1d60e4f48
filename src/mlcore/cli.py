"""The ``mlcore`` command. Exit codes: 0 ok, 1 failed, 2 bad usage or config,
65 data refused (data-quality), 70 internal error, 75 temporary failure (retry later)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlcore._logging import configure_logging, get_logger
from mlcore.backtest import (
    BacktestReport,
    ThetaRun,
    optimize_theta,
    rebuild_report,
    resolve_model,
    run_backtest,
)
from mlcore.config import TIMEFRAMES, AppConfig, load_config
from mlcore.data import (
    Catalog,
    FailoverProvider,
    FetchResult,
    FileProvider,
    IngestReport,
    build_catalog,
    build_providers,
    ingest,
    normalize_symbol,
    read_watermark,
)
from mlcore.demo import DEMO_SERVE_BARS, DemoResult, run_demo
from mlcore.errors import ConfigError, DataQualityError, MlcoreError, RetryableError
from mlcore.features import build_pair_features, build_symbol_features
from mlcore.registry import (
    STATUSES,
    ModelRecord,
    Registry,
    RegistryError,
    database_url,
    rebuild,
    registry_for,
)
from mlcore.training import TrainReport, train_models

if TYPE_CHECKING:
    from mlcore.flows import RetrainOutcome

app = typer.Typer(
    name="mlcore",
    help="ml-assets-core: market bars to trusted ML trading signals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate and show the policy configuration.", no_args_is_help=True)
catalog_app = typer.Typer(help="Build and inspect the dataset catalog.", no_args_is_help=True)
app.add_typer(config_app, name="config")
features_app = typer.Typer(help="Build and cache features from the catalog.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(features_app, name="features")
registry_app = typer.Typer(
    help="Model versions, their status and its history (SQLite, or PostgreSQL via POSTGRES_URL).",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")
theta_app = typer.Typer(
    help="Search and stabilise the entry thresholds θ1/θ2.", no_args_is_help=True
)
app.add_typer(theta_app, name="theta")
flows_app = typer.Typer(
    help="Prefect flows: run retraining now, serve its cron deployment, see runs and alerts.",
    no_args_is_help=True,
)
app.add_typer(flows_app, name="flows")

# Wide enough for the summary tables when output is piped (rich assumes 80 columns).
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
P = ParamSpec("P")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
R = TypeVar("R")

EnvOpt = Annotated[
    str | None,
    typer.Option("--config-env", envvar="SERVICE_ENV", help="dev | stg | prod (default dev)."),
]
RootOpt = Annotated[
    Path | None,
    typer.Option("--config-root", help="Folder holding base/ and envs/ (default: ./configs)."),
]


class Source(StrEnum):
    """Where ``ingest`` takes bars from."""

    file = "file"
    twelvedata = "twelvedata"
    auto = "auto"


def _exit_code(exc: MlcoreError) -> int:
    if isinstance(exc, ConfigError):
        return 2
    if isinstance(exc, RetryableError):
        return 75
    if isinstance(exc, DataQualityError):
        return 65
    return 1


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn every error into one clear line on stderr and an exit code; never a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        level = os.environ.get("LOG_LEVEL", "WARNING").upper()
        configure_logging(level if level in _LOG_LEVELS else "WARNING")
        try:
            return fn(*args, **kwargs)
        except MlcoreError as exc:
            get_logger("cli").error("command_failed", **exc.payload())
            err.print(
                f"[bold red]error[/] {exc.code}: {escape(exc.message)}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(_exit_code(exc)) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            get_logger("cli").exception("internal_error", error=repr(exc))
            err.print(
                f"[bold red]internal error[/] {type(exc).__name__}: {escape(str(exc))}",
                highlight=False,
            )
            raise typer.Exit(70) from None

    return wrapper


def _config(env: str | None, root: Path | None) -> AppConfig:
    return load_config(root, env)


@config_app.command("check")
@guarded
def config_check(config_env: EnvOpt = None, config_root: RootOpt = None) -> None:
    """Validate ENV and every policy file; print what is in force."""
    cfg = _config(config_env, config_root)
    out.print(f"config OK for SERVICE_ENV={cfg.env_name} ({cfg.config_root})")
    out.print(f"archive: {cfg.paths.archive} (backend {cfg.storage.backend})")
    out.print(f"timeframes: {', '.join(cfg.pipeline.timeframe_allowed)}")
    out.print(f"instruments: {', '.join(cfg.universe.instruments)}")
    enabled = [p.name for p in sorted(cfg.sources.providers, key=lambda p: p.priority) if p.enabled]
    out.print(f"providers (by priority): {', '.join(enabled)}")


def _print_ingest(report: IngestReport) -> None:
    out.print(
        f"ingested {report.symbol} {report.timeframe} from {report.source}: "
        f"{report.rows_read} rows read, {report.rows_rejected} rejected, "
        f"{report.new_bars} new, {report.updated_bars} updated, {report.unchanged_bars} unchanged"
    )
    for rule, n in sorted(report.rejects_by_rule.items()):
        out.print(f"  rejected {n} row(s): {rule}")
    for r in report.rejects[:10]:
        out.print(
            f"    {r['origin']}: row {r['row']}: field '{r['field']}': {r['rule']} "
            f"(got {r['raw']!r})"
        )
    if report.duplicates_dropped or report.conflicting_rows:
        out.print(
            f"  duplicates dropped: {report.duplicates_dropped}; conflicting deliveries: "
            f"{report.conflicting_rows}"
        )
    flagged = {k: v for k, v in report.flags.items() if k != "ok" and v}
    out.print(f"  flagged bars: {flagged or 'none'}; missing bars: {report.missing_bars}")
    for month, (reason, detail) in sorted(report.quarantined.items()):
        out.print(f"  [yellow]quarantined[/] {month}: {escape(f'{reason}: {detail}')}")
    out.print(
        f"  canonical partitions written: {len(report.canonical_partitions_written)} "
        f"{report.canonical_partitions_written}; unchanged: {report.canonical_partitions_unchanged}"
    )
    out.print(f"  report: {report.report_path}")


def _parse_time(value: str | None, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError as exc:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"{name}: cannot read {value!r} as a time"
        ) from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@app.command("ingest")
@guarded
def ingest_cmd(
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. XAU/USD (xauusd is normalized).")],
    timeframe: Annotated[str, typer.Option(help="Bar timeframe, e.g. 1h.")],
    source: Annotated[
        Source, typer.Option(help="file, twelvedata, or auto (sources.yaml failover).")
    ] = Source.file,
    path: Annotated[Path | None, typer.Option(help="CSV or Parquet file (source file).")] = None,
    start: Annotated[str | None, typer.Option(help="UTC start (REST; default: watermark).")] = None,
    end: Annotated[str | None, typer.Option(help="UTC end (REST; default: now).")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of timestamps without one (file).")] = "UTC",
    calendar: Annotated[str | None, typer.Option(help="Calendar name from universe.yaml.")] = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Fetch bars, check their quality, and store them as canonical partitions."""
    cfg = _config(config_env, config_root)
    sym = normalize_symbol(symbol, list(cfg.universe.instruments))
    if source is Source.file:
        if path is None:
            raise ConfigError("CLI_ARGUMENT_MISSING", "--source file needs --path FILE")
        provider = FileProvider(
            path, tz=tz, price_abs_tolerance=cfg.pipeline.dq_thresholds.price_abs_tolerance
        )
        fetched = provider.read(timeframe)
        lo, hi = _parse_time(start, "--start"), _parse_time(end, "--end")
        if lo is not None or hi is not None:
            fetched = provider.fetch(
                sym,
                timeframe,
                lo or pd.Timestamp.min.tz_localize("UTC"),
                hi or pd.Timestamp.max.tz_localize("UTC"),
            )
    else:
        fetched = _fetch_rest(cfg, source, sym, timeframe, start, end)
    report = ingest(cfg, fetched, sym, timeframe, calendar=calendar)
    _print_ingest(report)


def _rest_window(
    cfg: AppConfig, symbol: str, timeframe: str, start: str | None, end: str | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    step = pd.Timedelta(seconds=TIMEFRAMES[timeframe])
    hi = _parse_time(end, "--end") or pd.Timestamp.now(tz="UTC").floor(step)
    lo = _parse_time(start, "--start")
    if lo is None:
        mark = read_watermark(cfg, symbol, timeframe)
        months = cfg.pipeline.history_lookback_months
        lo = mark + step if mark is not None else hi - pd.DateOffset(months=months)
    if lo > hi:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"start {lo.isoformat()} is after end {hi.isoformat()}"
        )
    return lo, hi


def _fetch_rest(
    cfg: AppConfig, source: Source, symbol: str, timeframe: str, start: str | None, end: str | None
) -> FetchResult:
    lo, hi = _rest_window(cfg, symbol, timeframe, start, end)
    providers = build_providers(cfg.sources, cfg.pipeline)
    if source is Source.twelvedata:
        providers = [p for p in providers if p.name == "twelvedata"]
        if not providers:
            raise ConfigError(
                "CLI_SOURCE_UNAVAILABLE", "sources.yaml has no enabled provider named 'twelvedata'"
            )
    provider = FailoverProvider(providers)
    try:
        return provider.fetch(symbol, timeframe, lo.to_pydatetime(), hi.to_pydatetime())
    finally:
        provider.close()


@catalog_app.command("build")
@guarded
def catalog_build(config_env: EnvOpt = None, config_root: RootOpt = None) -> None:
    """Collect every partition's __meta.json into the index and apply the DQ filter."""
    cfg = _config(config_env, config_root)
    summary = build_catalog(cfg)
    out.print(
        f"catalog: {summary.partitions} partitions, {summary.included} included, "
        f"{summary.excluded} excluded"
    )
    out.print(f"  index: {summary.index_path}")
    out.print(f"  filtered: {summary.filtered_path} (catalog_hash {summary.catalog_hash[:12]})")


@features_app.command("build")
@guarded
def features_build(
    timeframe: Annotated[str, typer.Option(help="Bar timeframe, e.g. 1h.")],
    pair: Annotated[str | None, typer.Option(help="Pair id from universe.yaml.")] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol (single-instrument features).")] = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Build features from the catalog into the cache (default: every pair and every leg)."""
    cfg = _config(config_env, config_root)
    _check_timeframe(cfg, timeframe)
    if symbol is not None and normalize_symbol(symbol, list(cfg.universe.instruments)) not in (
        cfg.universe.instruments
    ):
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"--symbol {symbol!r} is not in universe.yaml {sorted(cfg.universe.instruments)}",
        )
    known = [p.pair_id for p in cfg.universe.pairs]
    if pair is not None and pair not in known:
        raise ConfigError("CLI_ARGUMENT_INVALID", f"pair {pair!r} is not in universe.yaml {known}")
    pairs = [
        p for p in cfg.universe.pairs if (pair is None and symbol is None) or p.pair_id == pair
    ]
    if symbol is not None:
        symbols = [normalize_symbol(symbol, list(cfg.universe.instruments))]
    elif pair is None:
        symbols = sorted({s for p in cfg.universe.pairs for s in (p.leg_a, p.leg_b)})
    else:
        symbols = []
    cat = Catalog(cfg)
    try:
        reports = [build_pair_features(cfg, cat, p, timeframe) for p in pairs]
        reports += [build_symbol_features(cfg, cat, s, timeframe) for s in symbols]
    except ValueError as exc:
        raise DataQualityError("FEATURES_INPUT_INVALID", str(exc)) from exc
    for r in reports:
        dropped = (
            f", dropped A {r.dropped_bars['A']}, B {r.dropped_bars['B']}" if r.dropped_bars else ""
        )
        out.print(
            f"features {r.pair_id} {r.timeframe} (hash {r.feature_hash[:12]}): "
            f"{r.aligned_bars} bars{dropped}, warm-up {r.warm_up_bars}; "
            f"computed {len(r.months_computed)} month(s), from cache {len(r.months_cached)}"
        )
        if r.months_computed:
            out.print(f"  computed: {', '.join(r.months_computed)}")
        out.print(f"  report: {r.report_path}")


def _print_demo(result: DemoResult) -> None:
    table = Table(title="ingest (first pass)")
    for col in (
        "symbol",
        "rows",
        "rejected",
        "dups",
        "conflict",
        "filled",
        "outlier",
        "spike",
        "quarantined",
    ):
        table.add_column(col, justify="right" if col != "symbol" else "left")
    for r in result.reports:
        table.add_row(
            r.symbol,
            str(r.rows_read),
            str(r.rows_rejected),
            str(r.duplicates_dropped),
            str(r.flags["conflict"]),
            str(r.flags["filled"]),
            str(r.flags["outlier"]),
            str(r.flags["spike"]),
            ", ".join(sorted(r.quarantined)) or "-",
        )
    out.print(table)
    rewritten = sum(len(r.canonical_partitions_written) for r in result.rerun_reports)
    out.print(f"re-ingest of the same files rewrote {rewritten} partition(s) (idempotent)")
    c = result.catalog
    out.print(f"catalog: {c.partitions} partitions, {c.included} included, {c.excluded} excluded")
    caught = sum(ch.caught for ch in result.checks)
    out.print(f"planted faults caught: {caught}/{len(result.checks)}")
    for ch in result.checks:
        if not ch.caught:
            out.print(
                f"  [red]missed[/] {ch.fault.symbol} {ch.fault.kind} at {ch.fault.ts}: {ch.seen}"
            )
    pairs = Table(title="features and labels (from the catalog)")
    for col in ("pair", "bars", "dropped A/B", "warm-up", "AI1 events", "excl.", "AI1 = 1",
                "AI3 mean", "AI2 = 1", "SELL/HOLD/BUY"):  # fmt: skip
        pairs.add_column(col, justify="right" if col != "pair" else "left")
    for p in result.pairs:
        d = p.direction_counts
        pairs.add_row(
            p.pair_id,
            str(p.aligned_bars),
            f"{p.dropped_bars['A']}/{p.dropped_bars['B']}",
            str(p.warm_up_bars),
            str(p.ai1_events),
            str(p.ai1_excluded),
            f"{p.ai1_positive_rate:.0%}",
            f"{p.ai3_mean_target:.2f}",
            f"{p.ai2_positive_rate:.0%}",
            f"{d['SELL']}/{d['HOLD']}/{d['BUY']}",
        )
    out.print(pairs)
    computed = sum(p.months_computed for p in result.pairs)
    cached = sum(p.months_cached for p in result.pairs)
    out.print(f"feature months computed {computed}, from cache {cached}")


def _print_demo_end(result: DemoResult) -> None:
    t = result.timings_s
    out.print(
        f"time: generate {t['generate_s']:.1f}s, ingest {t['ingest_s']:.1f}s, "
        f"re-ingest {t['reingest_s']:.1f}s, catalog {t['catalog_s']:.1f}s, "
        f"features+labels {t['features_labels_s']:.1f}s, retrain flow (train, θ, backtest, "
        f"publish) {t['retrain_flow_s']:.1f}s, serve {t.get('serve_s', 0.0):.1f}s, "
        f"total {t['total_s']:.1f}s"
    )
    out.print(f"summary: {result.report_path}")
    if result.retrain is not None:
        _print_retrain(result.retrain)
    if result.backtest is not None:
        out.print(f"adoption decision: {result.backtest.decision.upper()}")
        out.print(f"report: {result.backtest.report}")
    if result.serving is not None:
        out.print(f"serving: the catalog's last {DEMO_SERVE_BARS} bar times replayed through the "
                  f"workers as live bars ({result.timings_s['serve_s']:.1f}s)")  # fmt: skip
        _print_serve(result.serving)
        _print_entry_signal(result.serving.root)


def _print_entry_signal(root: Path) -> None:
    """The newest entry signal of a serving run (else the newest signal), as JSON."""
    from mlcore.serving import Outbox

    payloads: list[bytes] = []
    for db in sorted((root / "outbox").glob("*.db")):
        box = Outbox(db)
        payloads += box.payloads()
        box.close()
    signals = [json.loads(p) for p in payloads]
    entries = [s for s in signals if s["metadata"]["action"] == "entry"]
    if signals:
        shown = (entries or signals)[-1]
        kind = "entry signal" if entries else "signal"
        out.print(f"the replay's last {kind} ({shown['pair_id']}):")
        out.print_json(json.dumps(shown))


def _print_retrain(outcome: RetrainOutcome) -> None:
    out.print(
        f"retrain run {outcome.run_id}: {outcome.status}, {outcome.retries} retries "
        "(audit.retrain_runs)"
    )
    if outcome.publish is not None:
        p = outcome.publish
        out.print(f"registry: {p.model_version} is {p.status} — {escape(p.checklist.notes())}")
        for where in p.notified:
            out.print(f"serving notified: {where}")
    elif outcome.message:
        out.print(f"registry: {escape(outcome.message)}")


@app.command("train")
@guarded
def train(
    timeframe: Annotated[str, typer.Option(help="Bar timeframe, e.g. 1h.")],
    pair: Annotated[
        list[str] | None, typer.Option(help="Pair id from universe.yaml (repeat; default all).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: training_policy.yaml).")] = None,
    direction: Annotated[
        bool, typer.Option(help="Also train the direction ensemble on the pairs' legs.")
    ] = True,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Train AI1, AI2, AI3 and the direction ensemble from the catalog; write a model version."""
    cfg = _config(config_env, config_root)
    _check_timeframe(cfg, timeframe)
    known = [p.pair_id for p in cfg.universe.pairs]
    unknown = [p for p in pair or [] if p not in known]
    if unknown:
        raise ConfigError("CLI_ARGUMENT_INVALID", f"pair(s) {unknown} not in universe.yaml {known}")
    cat = Catalog(cfg)
    try:
        report = train_models(
            cfg, cat, timeframe, pair_ids=pair or None, seed=seed, direction=direction
        )
    except ValueError as exc:
        raise DataQualityError("TRAIN_INPUT_INVALID", str(exc)) from exc
    _print_train(report)


def _check_timeframe(cfg: AppConfig, timeframe: str) -> None:
    if timeframe not in cfg.pipeline.timeframe_allowed:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"--timeframe {timeframe!r} is not one of {cfg.pipeline.timeframe_allowed}",
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_direction(direction: dict[str, Any]) -> None:
    """The direction ensemble's levels: soft-vote scores next to the no-skill baseline."""
    if not direction:
        return
    table = Table(title="direction ensemble (SELL/HOLD/BUY, soft vote)")
    cols = ("level", "set", "rows", "AUC", "PR-AUC", "logloss", "prior logloss", "F1", "ECE")
    keys = ("auc", "pr_auc", "logloss", "prior_logloss", "f1", "ece")
    for col in cols:
        table.add_column(col, justify="left" if col in ("level", "set") else "right")
    for level, m in direction["levels"].items():
        for name, key in (("CV out-of-fold", "cv_out_of_fold"), ("test", "oos")):
            part = m[key]
            table.add_row(
                f"{level} ({len(m['columns'])} features)" if key == "cv_out_of_fold" else "",
                name, str(part["n"]),
                *(_fmt(part[k]) for k in keys),
            )  # fmt: skip
    out.print(table)
    for level, m in direction["levels"].items():
        canary = m["canary"]
        verdict = "pass" if canary["passed"] else "FAIL"
        out.print(
            f"direction level {level}: leakage canary AUC {_fmt(canary['auc_mean'])} ({verdict}, "
            f"0.5 +- {canary['tolerance']})"
        )
    for level, reason in direction["skipped_levels"].items():
        out.print(f"direction level {level}: not trained: {escape(reason)}")


def _print_train(report: TrainReport) -> None:
    table = Table(title=f"model version {report.model_version}")
    for col in ("model", "set", "rows", "positive", "AUC", "PR-AUC", "logloss", "Brier", "ECE"):
        table.add_column(col, justify="left" if col in ("model", "set") else "right")
    sets = (("CV out-of-fold", "cv_out_of_fold"), ("test, raw", "oos_raw"),
            ("test, calibrated", "oos_calibrated"))  # fmt: skip
    for model, m in report.metrics.items():
        for name, key in sets:
            part = m[key]
            table.add_row(
                model.upper() if key == "cv_out_of_fold" else "", name, str(part["n"]),
                f"{part['positive_rate']:.0%}",
                *(f"{part[k]:.3f}" if part[k] is not None else "-"
                  for k in ("auc", "pr_auc", "logloss", "brier", "ece")),
            )  # fmt: skip
    out.print(table)
    for model, m in report.metrics.items():
        canary = m["canary"]
        verdict = "pass" if canary["passed"] else "FAIL"
        out.print(
            f"{model.upper()}: CV per-fold AUC mean {m['cv_fold_auc_mean']:.3f}; leakage canary "
            f"(shuffled labels) AUC {canary['auc_mean']:.3f} ({verdict}, "
            f"0.5 +- {canary['tolerance']})"
        )
    _print_direction(report.direction)
    a3 = report.ai3
    oos = a3["oos"]
    out.print(
        f"AI3 (position scale in [0, 1]) on {oos['n']} test events: RMSE {oos['rmse']:.3f} "
        f"(predicting the training mean: {a3['oos_mean_baseline_rmse']:.3f}), MAE "
        f"{oos['mae']:.3f}, Spearman {_fmt(oos['spearman'])}, R2 {_fmt(oos['r2'])}"
    )
    status = "[green]ok[/]" if report.status == "ok" else "[red]blocked[/]"
    out.print(f"retrain_status={status} {escape('; '.join(report.blocked_reasons))}")
    out.print(f"model: {report.folder}")


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Model version (name or folder; default: the newest)."),
]
BaselineOpt = Annotated[
    str | None,
    typer.Option(help="Model version in service, for the non-inferiority gate and its θ."),
]


def _models(cfg: AppConfig, model: str | None, baseline: str | None) -> tuple[Path, Path | None]:
    try:
        return resolve_model(cfg, model), (
            resolve_model(cfg, baseline) if baseline is not None else None
        )
    except ValueError as exc:
        raise ConfigError("CLI_ARGUMENT_INVALID", str(exc)) from exc


def _print_theta(th: ThetaRun) -> None:
    s, st = th.search, th.stabilised
    out.print(
        f"θ search on {th.search_start:%Y-%m-%d} .. {th.test_start:%Y-%m-%d}: {s.n_trials} "
        f"settings ({s.n_trials - s.optuna_trials} grid + {s.optuna_trials} Optuna"
        f"{', stopped early' if s.stopped_early else ''}); best θ = ({s.best[0]:.4f}, "
        f"{s.best[1]:.4f}), objective {s.best_objective:.4f}"
    )
    for step in st.steps:
        out.print(f"  {escape(step)}")
    out.print(
        f"θ adopted = ({st.theta[0]:.4f}, {st.theta[1]:.4f}) (previous ({st.previous[0]:.4f}, "
        f"{st.previous[1]:.4f})); gate pass rate (risk < θ2) {st.gate_pass_rate:.1%}"
    )


def _print_backtest(rep: BacktestReport) -> None:
    t = rep.test
    out.print(
        f"test window from {rep.lineage['test_window_start'][:10]}: annual return "
        f"{_fmt(t.get('annual_return'))}, Sharpe {_fmt(t.get('sharpe'))}, MaxDD "
        f"{_fmt(t.get('max_drawdown'))}, {t.get('trades', 0)} trades "
        f"({_fmt(t.get('trades_per_year'))}/year), win rate {_fmt(t.get('win_rate'))}"
    )
    stress = Table(title="stress scenarios (test window, adopted θ)")
    for col in ("scenario", "annual return", "Sharpe", "MaxDD", "trades/year"):
        stress.add_column(col, justify="left" if col == "scenario" else "right")
    for row in rep.stress.to_dict("records"):
        stress.add_row(
            str(row["scenario"]),
            *(_fmt(row[k]) for k in ("annual_return", "sharpe", "max_drawdown", "trades_per_year")),
        )
    out.print(stress)
    gates = Table(title=f"adoption gates: {rep.decision.upper()}")
    for col in ("gate", "value", "threshold", "result", "reason"):
        gates.add_column(col)
    for g in rep.gates:
        value = g["value"]
        gates.add_row(
            g["gate"], "-" if value is None else f"{value:.4f}", escape(g["threshold"]),
            "[green]pass[/]" if g["passed"] else "[red]FAIL[/]", escape(g["reason"]),
        )  # fmt: skip
    out.print(gates)
    out.print(f"decision: {rep.decision} (model version {rep.model_version})")
    out.print(f"results: {rep.folder}")
    out.print(f"report: {rep.report}")


SeedOpt = Annotated[int | None, typer.Option(help="Optuna seed (default: the model's).")]


def _on_model(
    fn: Callable[..., R], env: str | None, root: Path | None, model: str | None,
    baseline: str | None, seed: int | None,
) -> R:  # fmt: skip
    """Run ``fn(cfg, catalog, folder, baseline_folder=, seed=)`` on the chosen model version;
    what the inputs lack becomes one clear error."""
    cfg = _config(env, root)
    folder, base = _models(cfg, model, baseline)

    def restore(version: str) -> object:
        # A registered version's lost or damaged file comes back from the registry's copy.
        return _registry(cfg).restore(version, actor="loader")

    try:
        return fn(cfg, Catalog(cfg), folder, baseline_folder=base, seed=seed, restore=restore)
    except ValueError as exc:
        raise DataQualityError("BACKTEST_INPUT_INVALID", str(exc)) from exc


@theta_app.command("optimize")
@guarded
def theta_optimize(
    model: ModelOpt = None,
    baseline: BaselineOpt = None,
    seed: SeedOpt = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Search θ1/θ2 for a model version (grid, then Optuna) and stabilise it."""
    _print_theta(_on_model(optimize_theta, config_env, config_root, model, baseline, seed))


@app.command("backtest")
@guarded
def backtest_cmd(
    model: ModelOpt = None,
    baseline: BaselineOpt = None,
    seed: SeedOpt = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Backtest a model version: θ search, test window, stress, adoption gates, HTML report."""
    rep: BacktestReport = _on_model(run_backtest, config_env, config_root, model, baseline, seed)
    _print_theta(rep.theta_run)
    _print_backtest(rep)


@app.command("report")
@guarded
def report_cmd(
    model: ModelOpt = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Write the HTML report of a model version's backtest again from its stored results."""
    cfg = _config(config_env, config_root)
    folder, _ = _models(cfg, model, None)
    results = cfg.paths.reports / "backtest" / folder.name
    if not results.is_dir():
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"model version {folder.name} has no backtest results under {results.parent}: run "
            "`mlcore backtest` first",
        )
    try:
        path = rebuild_report(cfg, results)
    except ValueError as exc:
        raise DataQualityError("BACKTEST_RESULT_INVALID", str(exc)) from exc
    out.print(f"report: {path}")


NotesOpt = Annotated[str, typer.Option(help="Why (required: every decision is recorded with it).")]
ActorOpt = Annotated[
    str, typer.Option(help="Who decides (recorded).", envvar="USER", show_envvar=False)
]


def _registry(cfg: AppConfig) -> Registry:
    try:
        return registry_for(cfg)
    except Exception as exc:
        raise RetryableError(
            "REGISTRY_DB_UNAVAILABLE", f"registry database unavailable: {str(exc).splitlines()[0]}"
        ) from exc


def _registry_call(fn: Callable[[], R]) -> R:
    try:
        return fn()
    except RegistryError as exc:
        raise MlcoreError("REGISTRY_REQUEST_REFUSED", str(exc)) from exc


def _record_table(records: list[ModelRecord], title: str) -> Table:
    table = Table(title=title)
    for col in ("version", "status", "timeframe", "θ1", "θ2", "created", "deployed", "code",
                "notes"):  # fmt: skip
        table.add_column(col)
    for r in records:
        table.add_row(
            r.model_version, r.status, r.timeframe,
            "-" if r.theta1 is None else f"{r.theta1:.4f}",
            "-" if r.theta2 is None else f"{r.theta2:.4f}",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            "-" if r.deployed_at is None else f"{r.deployed_at:%Y-%m-%d %H:%M}",
            r.code_hash[:7], escape(r.notes),
        )  # fmt: skip
    return table


@registry_app.command("list")
@guarded
def registry_list(
    status: Annotated[
        str | None, typer.Option(help=f"Only one status: {', '.join(STATUSES)}.")
    ] = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Every registered model version, newest first."""
    reg = _registry(_config(config_env, config_root))
    records = _registry_call(lambda: reg.records(status))
    out.print(_record_table(records, f"model registry ({len(records)} versions)"))


@registry_app.command("show")
@guarded
def registry_show(
    version: Annotated[str, typer.Argument(help="Model version.")],
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """One version's record, lineage and status history."""
    reg = _registry(_config(config_env, config_root))
    rec = _registry_call(lambda: reg.get(version))
    out.print(_record_table([rec], f"model version {version}"))
    out.print(f"artifacts: {rec.artifact_path}")
    out.print(f"code_hash {rec.code_hash}, data_hash {rec.data_hash}, seed {rec.seed}")
    history = Table(title="history")
    for col in ("when", "event", "from", "to", "who", "notes"):
        history.add_column(col)
    for h in reg.history(version):
        history.add_row(
            f"{h['changed_at']:%Y-%m-%d %H:%M:%S}", h["event"], h["old_status"] or "-",
            h["new_status"] or "-", escape(h["actor"]), escape(h["notes"]),
        )  # fmt: skip
    out.print(history)


@registry_app.command("register")
@guarded
def registry_register(
    notes: NotesOpt,
    model: ModelOpt = None,
    candidate: Annotated[
        bool, typer.Option(help="Register as candidate (passed its backtest) instead of draft.")
    ] = False,
    actor: ActorOpt = "cli",
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Register a model version (with the θ its backtest adopted, if it has one)."""
    cfg = _config(config_env, config_root)
    folder, _ = _models(cfg, model, None)
    theta = None
    record = cfg.paths.reports / "backtest" / folder.name / "backtest.json"
    if record.exists():
        adopted = json.loads(record.read_bytes())["theta"]["adopted"]
        theta = (float(adopted[0]), float(adopted[1]))
    reg = _registry(cfg)
    status = "candidate" if candidate else "draft"
    rec = _registry_call(lambda: reg.register(folder, actor=actor, notes=notes, status=status,
                                              theta=theta))  # fmt: skip
    out.print(
        f"registered {rec.model_version} as {rec.status} ({database_url(cfg).split('://')[0]})"
    )


@registry_app.command("promote")
@guarded
def registry_promote(
    version: Annotated[str, typer.Argument(help="Model version.")],
    to: Annotated[str, typer.Option(help="candidate, approved, deployed or rejected.")],
    notes: NotesOpt,
    actor: ActorOpt = "cli",
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Move a version along draft -> candidate -> approved -> deployed (or to rejected)."""
    reg = _registry(_config(config_env, config_root))
    rec = _registry_call(lambda: reg.transition(version, to, actor=actor, notes=notes))
    out.print(f"{rec.model_version} is now {rec.status}")


@registry_app.command("rollback")
@guarded
def registry_rollback(
    notes: NotesOpt,
    actor: ActorOpt = "cli",
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Take the deployed version out of service and put back the one deployed before it."""
    reg = _registry(_config(config_env, config_root))
    gone = reg.deployed()
    rec = _registry_call(lambda: reg.rollback(actor=actor, notes=notes))
    out.print(f"rolled back {gone.model_version if gone else '-'}; {rec.model_version} is deployed")


@registry_app.command("verify")
@guarded
def registry_verify(
    version: Annotated[str, typer.Argument(help="Model version.")],
    rebuild_: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Also retrain the version from its lineage (catalog, seed, config) in a "
            "scratch folder and compare every file byte for byte.",
        ),
    ] = False,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Check a version's served files against the checksums the registry recorded."""
    cfg = _config(config_env, config_root)
    reg = _registry(cfg)
    bad = _registry_call(lambda: reg.verify(version))
    if bad:
        for name, why in bad.items():
            out.print(f"{version}/{name}: {why}")
        raise MlcoreError(
            "REGISTRY_ARTIFACT_DAMAGED",
            f"{len(bad)} file(s) of {version} fail verification; `mlcore registry restore "
            f"{version}` puts back the archived copies",
        )
    out.print(f"{version}: every file matches its recorded checksum")
    if not rebuild_:
        return
    try:
        rep = rebuild(cfg, Catalog(cfg), reg.served_folder(version))
    except ValueError as exc:
        raise DataQualityError("REGISTRY_REBUILD_INVALID", str(exc)) from exc
    for w in rep.warnings:
        out.print(f"warning: {escape(w)}")
    out.print(f"rebuild: {len(rep.identical)} file(s) byte-identical")
    for name in rep.differing:
        out.print(f"  differs: {name}")
    for name in rep.missing:
        out.print(f"  not produced: {name}")
    if not rep.ok:
        raise MlcoreError(
            "REGISTRY_REBUILD_DIFFERS",
            f"{len(rep.differing) + len(rep.missing)} file(s) of {version} do not rebuild "
            "identically",
        )


@registry_app.command("restore")
@guarded
def registry_restore(
    version: Annotated[str, typer.Argument(help="Model version.")],
    actor: ActorOpt = "cli",
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Put back a version's missing or damaged files from the registry's archived copy."""
    reg = _registry(_config(config_env, config_root))
    restored = _registry_call(lambda: reg.restore(version, actor=actor))
    for name, why in restored.items():
        out.print(f"restored {version}/{name} ({why})")
    out.print(f"{version}: {len(restored)} file(s) restored, every file verified")


@registry_app.command("prune")
@guarded
def registry_prune(
    dry_run: Annotated[bool, typer.Option(help="Only list what would go.")] = False,
    actor: ActorOpt = "cli",
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Delete the files of versions beyond data_retention.yaml's model_versions (never a
    deployed, rolled-back or earlier deployed one)."""
    cfg = _config(config_env, config_root)
    reg = _registry(cfg)
    keep = cfg.data_retention.model_versions
    gone = _registry_call(lambda: reg.prune(keep, actor=actor, dry_run=dry_run))
    verb = "would delete" if dry_run else "deleted"
    out.print(f"keeping the newest {keep}: {verb} {len(gone)} version(s) {', '.join(gone)}")


class FlowName(StrEnum):
    """Which flow ``flows run`` starts."""

    retrain = "retrain"
    backtest = "backtest"
    theta = "theta"
    publish = "publish"


def _flow_call(fn: Callable[[], R]) -> R:
    """Flow failures as one clear line: the run is already recorded in audit.retrain_runs."""
    from mlcore.flows import RetrainRefused

    try:
        return fn()
    except RetrainRefused as exc:
        raise MlcoreError("CORE_RETRAIN_REFUSED", str(exc)) from exc
    except RegistryError as exc:
        raise MlcoreError("REGISTRY_REQUEST_REFUSED", str(exc)) from exc
    except (ValueError, OSError) as exc:
        raise MlcoreError("CORE_RETRAIN_FAILED", f"{type(exc).__name__}: {exc}") from exc


@flows_app.command("run")
@guarded
def flows_run(
    name: Annotated[
        FlowName, typer.Argument(help="retrain (the whole chain), backtest, theta or publish.")
    ],
    model: ModelOpt = None,
    timeframe: Annotated[
        str | None, typer.Option(help="Bars to train on (default: retrain_policy.yaml).")
    ] = None,
    seed: SeedOpt = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Run a flow once, now, in this process (Prefect ephemeral mode unless PREFECT_API_URL
    names a server). ``retrain`` goes from the catalog to a published version."""
    from mlcore import flows

    flows.console_without_tracebacks()
    cfg = _config(config_env, config_root)
    if name is FlowName.retrain:
        outcome = _flow_call(lambda: flows.run_retrain(cfg, timeframe=timeframe, seed=seed))
        if outcome.training is not None:
            _print_train(outcome.training)
        if outcome.backtest is not None:
            _print_theta(outcome.backtest.theta_run)
            _print_backtest(outcome.backtest)
        _print_retrain(outcome)
        return
    folder, _ = _models(cfg, model, None)
    where = {"config_root": str(cfg.config_root), "config_env": cfg.env_name}
    if name is FlowName.theta:
        _print_theta(_flow_call(lambda: flows.core_theta_opt_flow(folder.name, **where)))
    elif name is FlowName.backtest:
        rep = _flow_call(lambda: flows.core_backtest_flow(folder.name, **where))
        _print_theta(rep.theta_run)
        _print_backtest(rep)
    else:
        pub = _flow_call(lambda: flows.core_publish_flow(folder.name, **where))
        out.print(
            f"registry: {pub.model_version} is {pub.status} — {escape(pub.checklist.notes())}"
        )
        for where_ in pub.notified:
            out.print(f"serving notified: {where_}")


@flows_app.command("serve")
@guarded
def flows_serve(
    cron: Annotated[
        str | None,
        typer.Option(help="Cron schedule instead of retrain_policy.yaml's retrain_cron."),
    ] = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Serve the core_retrain_flow cron deployment until stopped (Ctrl-C). Needs a Prefect
    server: `prefect server start --host 127.0.0.1` and PREFECT_API_URL."""
    from mlcore import flows

    flows.console_without_tracebacks()
    cfg = _config(config_env, config_root)
    try:
        flows.retrain_deployment(cfg, cron)
    except ValueError as exc:
        raise ConfigError("CLI_ARGUMENT_INVALID", f"--cron {cron!r}: {exc}") from exc
    out.print(
        f"serving deployment core_retrain_flow/{flows.DEPLOYMENT} on "
        f"'{cron or cfg.retrain.retrain_cron}' ({cfg.retrain.timezone}); Ctrl-C stops"
    )
    try:
        flows.serve_retrain(cfg, cron)
    except ValueError as exc:
        raise ConfigError("PREFECT_SERVER_MISSING", str(exc)) from exc


@flows_app.command("resume")
@guarded
def flows_resume(
    notes: NotesOpt,
    actor: ActorOpt = "cli",
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Resume retraining stopped after consecutive failures (recorded with the notes)."""
    reg = _registry(_config(config_env, config_root))
    failures = reg.consecutive_failures()
    _registry_call(lambda: reg.resume_retraining(actor=actor, notes=notes))
    out.print(f"retraining resumed ({failures} consecutive failure(s) cleared)")


@flows_app.command("status")
@guarded
def flows_status(
    limit: Annotated[int, typer.Option(help="How many runs and alerts to show.")] = 10,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Recent retraining runs (audit.retrain_runs) and alerts (audit.alerts)."""
    cfg = _config(config_env, config_root)
    reg = _registry(cfg)
    runs = Table(title="retraining runs (newest first)")
    for col in ("run", "started", "ended", "status", "retries", "version", "error"):
        runs.add_column(col)
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
    out.print(
        f"consecutive failures: {failures}; retraining "
        f"{'STOPPED (mlcore flows resume --notes ...)' if stopped else 'enabled'}"
    )


@app.command("demo")
@guarded
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the generated market.")] = 7,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Run the whole pipeline built so far on the embedded default with generated data."""
    from mlcore import flows

    flows.console_without_tracebacks()
    cfg = _config(config_env, config_root)
    out.print(f"ml-assets-core demo — SERVICE_ENV={cfg.env_name}, archive {cfg.paths.archive}")
    out.print(f"started {datetime.now(UTC).isoformat(timespec='seconds')}")
    result = run_demo(cfg, seed=seed)
    _print_demo(result)
    if result.training is not None:
        _print_train(result.training)
    if result.backtest is not None:
        _print_theta(result.backtest.theta_run)
        _print_backtest(result.backtest)
    _print_demo_end(result)
    if not result.all_caught:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``mlcore`` console script."""
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)


# -- serving ------------------------------------------------------------------------------
def _print_serve(summary: Any) -> None:
    c = summary.counts
    m = summary.model
    out.print(f"model {m.version} (θ1={m.theta[0]:.2f}, θ2={m.theta[1]:.2f}): {m.why}")
    for spec in summary.workers:
        out.print(f"  {spec.worker_id}: {', '.join(spec.pair_ids)}")
    actions = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("signal:")}
    refused = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("refused:")}
    out.print(
        f"signals {sum(actions.values())} ("
        + ", ".join(f"{a} {n}" for a, n in sorted(actions.items())) + "); "
        + "bars refused " + (", ".join(f"{r} {n}" for r, n in sorted(refused.items())) or "0")
    )  # fmt: skip
    out.print(f"signal.json files under {summary.root / 'signals'}; outboxes under "
              f"{summary.root / 'outbox'}")  # fmt: skip
    for event in summary.events:
        out.print(f"  {event}")


@app.command("serve")
@guarded
def serve_cmd(
    model: Annotated[
        str | None,
        typer.Option(help="Serve this version (name or folder) instead of the deployed one."),
    ] = None,
    pairs: Annotated[
        str | None, typer.Option(help="Comma-separated pair ids (default: the universe).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: pairs_per_worker).")
    ] = None,
    replay_last: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Replay the catalog's last N bars through the workers (warmed on the bars "
            "before them), then stop: the demo of live serving without a feed.",
        ),
    ] = None,
    exit_when_idle: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds without bars.")
    ] = None,
    bars: Annotated[
        str | None,
        typer.Option(help="Bar source: redis or file (default: serving_policy.yaml bar_source)."),
    ] = None,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
) -> None:
    """Run the inference workers: bars in (Redis Streams, or a JSON-lines file), signals out
    (Redis stream + Pub/Sub, signal.json, core.signals_live). Ctrl-C stops them cleanly."""
    from mlcore import serving

    cfg = _config(config_env, config_root)
    ids = [p.strip() for p in pairs.split(",") if p.strip()] if pairs else None
    try:
        summary = serving.serve(
            cfg, model=model, pair_ids=ids, workers=workers, replay_last=replay_last,
            exit_when_idle_seconds=exit_when_idle, bars=bars,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError("SERVING_START_REFUSED", str(exc)) from exc
    _print_serve(summary)
