"""``mlcore train``, ``theta optimize``, ``backtest`` and ``report``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mlcore._progress import stage
from mlcore.cli._app import app, coded, command, load_config, typer_app
from mlcore.cli._data import TimeframeOpt, check_pairs, check_timeframe
from mlcore.cli._params import SEED_MAX
from mlcore.cli._render import print_backtest, print_theta, print_train, text
from mlcore.errors import ConfigError, DataQualityError, FatalError

if TYPE_CHECKING:
    from mlcore.backtest import BacktestReport
    from mlcore.config import AppConfig
    from mlcore.registry import CheckedModel, ModelRecord, Registry
    from mlcore.training import TrainReport

R = TypeVar("R")
theta_app = typer_app("Search and stabilise the entry thresholds θ1/θ2.")

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Model version (name or folder; default: the newest)."),
]
BaselineOpt = Annotated[
    str | None,
    typer.Option(help="Model version in service, for the non-inferiority gate and its θ."),
]
SeedOpt = Annotated[
    int | None, typer.Option(min=0, max=SEED_MAX, help="Optuna seed (default: the model's).")
]
UnregisteredOpt = Annotated[
    bool,
    typer.Option(
        "--unregistered",
        help="Accept a model folder the registry does not hold (its results and signals are "
        "marked unregistered). A registered version is always checked against the registry.",
    ),
]


@command(app, "train")
def train(
    timeframe: TimeframeOpt,
    pair: Annotated[
        list[str] | None, typer.Option(help="Pair id from universe.yaml (repeat; default all).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(min=0, max=SEED_MAX, help="Seed (default: training_policy.yaml)."),
    ] = None,
    direction: Annotated[
        bool, typer.Option(help="Also train the direction ensemble on the pairs' legs.")
    ] = True,
    register: Annotated[
        bool,
        typer.Option(
            help="Register the new version in the registry as draft (rejected if training "
            "was blocked), with an archived copy of its files."
        ),
    ] = True,
    actor: Annotated[
        str, typer.Option(help="Who trains (recorded).", envvar="USER", show_envvar=False)
    ] = "cli",
) -> None:
    """Train AI1, AI2, AI3 and the direction ensemble from the catalog; write a model version
    and register it (draft)."""
    from mlcore.cli._registry import open_registry, registry_call
    from mlcore.data import Catalog
    from mlcore.training import train_models

    cfg = load_config()
    check_timeframe(cfg, timeframe)
    check_pairs(cfg, pair or [])
    cat = Catalog(cfg)
    reg = open_registry(cfg) if register else None  # unreachable: said before training
    with coded(DataQualityError, "TRAIN_INPUT_INVALID"):
        with stage("train") as st:
            report = train_models(
                cfg, cat, timeframe, pair_ids=pair or None, seed=seed, direction=direction
            )
            st.detail = f"model version {report.model_version} ({report.status})"
    print_train(report)
    if reg is not None:
        rec = registry_call(lambda: register_trained(reg, report, actor))
        text(f"registered {rec.model_version} as {rec.status}: {rec.notes}")
    if report.status == "blocked":
        # A script chaining train and backtest must not go on as if a usable version existed.
        models = dict.fromkeys(r.split(":", 1)[0] for r in report.blocked_reasons)
        raise FatalError(
            "TRAIN_RUN_BLOCKED",
            f"training of {report.model_version} blocked ({', '.join(models)}: the reasons "
            "are under retrain_status above); the version is kept for inspection"
            + (", registered as rejected" if reg is not None else ""),
        )


def register_trained(reg: Registry, report: TrainReport, actor: str) -> ModelRecord:
    """Register a version ``mlcore train`` wrote as draft, or rejected when its training was
    blocked (as the retraining flow does), so that ``--model`` finds it in the registry."""
    from mlcore.registry import ModelStatus
    from mlcore.training import TrainStatus

    said = report.blocked_reasons or report.warnings
    why = f": {said}" if said else ""
    rec = reg.register(
        report.folder,
        actor=actor,
        notes=f"trained by `mlcore train` (retrain_status {report.status}){why}",
    )
    if report.status is TrainStatus.BLOCKED:
        rec = reg.transition(
            rec.model_version,
            ModelStatus.REJECTED,
            actor=actor,
            notes=f"retrain_status=blocked: {report.blocked_reasons}",
        )
    return rec


def resolve_models(
    cfg: AppConfig, model: str | None, baseline: str | None
) -> tuple[Path, Path | None]:
    """The model version folders ``--model`` and ``--baseline`` name (exit 2 if not found)."""
    from mlcore.backtest import resolve_model

    with coded(ConfigError, "CLI_ARGUMENT_INVALID"):
        return resolve_model(cfg, model), (
            resolve_model(cfg, baseline) if baseline is not None else None
        )


def checked_models(
    cfg: AppConfig, model: str | None, baseline: str | None, *, unregistered: bool
) -> tuple[CheckedModel, CheckedModel | None]:
    """The versions ``--model`` and ``--baseline`` name, each checked against the registry as
    the deployed path checks its version (restored from the artifact store, or refused with
    exit 1); a folder the registry does not hold is accepted only with ``--unregistered``
    (else exit 2)."""
    from mlcore.cli._registry import open_registry
    from mlcore.registry import check_model

    folder, base = resolve_models(cfg, model, baseline)
    reg = open_registry(cfg)

    def check(path: Path) -> CheckedModel:
        return check_model(reg, path, allow_unregistered=unregistered, actor="loader")

    return check(folder), (check(base) if base is not None else None)


def _on_model(
    name: str, fn: Callable[..., R], model: str | None, baseline: str | None, seed: int | None,
    unregistered: bool, *, stamp: bool = False,
) -> R:  # fmt: skip
    """Run ``fn(cfg, catalog, folder, baseline_folder=, seed=)`` on the chosen model version,
    checked against the registry first (``stamp``: and tell ``fn`` whether it is registered,
    ``model_registered=``); what the inputs lack becomes one clear error."""
    from mlcore.cli._registry import open_registry
    from mlcore.data import Catalog

    cfg = load_config()
    checked, base = checked_models(cfg, model, baseline, unregistered=unregistered)
    if not checked.registered:
        text(f"warning: model version {checked.version} is not registered (--unregistered): "
             "nothing checked its files against the registry")  # fmt: skip
    extra: dict[str, Any] = {"model_registered": checked.registered} if stamp else {}

    def restore(version: str) -> object:
        # A registered version's lost or damaged file comes back from the registry's copy.
        return open_registry(cfg).restore(version, actor="loader")

    with coded(DataQualityError, "BACKTEST_INPUT_INVALID"):
        with stage(name) as st:
            result = fn(
                cfg, Catalog(cfg), checked.folder, seed=seed, restore=restore,
                baseline_folder=None if base is None else base.folder, **extra,
            )  # fmt: skip
            st.detail = checked.folder.name
        return result


@command(theta_app, "optimize")
def theta_optimize(
    model: ModelOpt = None, baseline: BaselineOpt = None, seed: SeedOpt = None,
    unregistered: UnregisteredOpt = False,
) -> None:  # fmt: skip
    """Search θ1/θ2 for a model version (grid, then Optuna) and stabilise it."""
    from mlcore.backtest import optimize_theta

    print_theta(_on_model("theta search", optimize_theta, model, baseline, seed, unregistered))


@command(app, "backtest")
def backtest_cmd(
    model: ModelOpt = None, baseline: BaselineOpt = None, seed: SeedOpt = None,
    unregistered: UnregisteredOpt = False,
) -> None:  # fmt: skip
    """Backtest a model version: θ search, test window, stress, adoption gates, HTML report."""
    from mlcore.backtest import run_backtest

    rep: BacktestReport = _on_model("backtest", run_backtest, model, baseline, seed,
                                    unregistered, stamp=True)  # fmt: skip
    print_theta(rep.theta_run)
    print_backtest(rep)


@command(app, "report")
def report_cmd(model: ModelOpt = None, unregistered: UnregisteredOpt = False) -> None:
    """Write the HTML report of a model version's backtest again from its stored results."""
    from mlcore.backtest import rebuild_report

    cfg = load_config()
    folder = checked_models(cfg, model, None, unregistered=unregistered)[0].folder
    results = cfg.paths.reports / "backtest" / folder.name
    if not results.is_dir():
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"model version {folder.name} has no backtest results under {results.parent}: run "
            "`mlcore backtest` first",
        )
    with coded(DataQualityError, "BACKTEST_RESULT_INVALID"):
        path = rebuild_report(cfg, results, folder)
    text(f"report: {path}")
