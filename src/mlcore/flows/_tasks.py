"""The Prefect tasks of the flows: thin wrappers around the pipeline's stage functions.

No task caches its result (``NO_CACHE``): every input is read afresh, as a scheduled run must.
Retries, their backoff and the retry condition are set per run from retrain_policy.yaml
(:func:`with_retries`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from mlcore._logging import get_logger
from mlcore._progress import stage_done
from mlcore.backtest import BacktestReport, ThetaRun, optimize_theta, run_backtest
from mlcore.config import AppConfig
from mlcore.data import Catalog, build_catalog, pairs_at
from mlcore.errors import MissingInputError
from mlcore.flows._guard import RunGuard
from mlcore.flows._publish import Checklist, adoption_checklist
from mlcore.registry import ModelRecord, Registry
from mlcore.training import LabelledPair, TrainReport, label_pair, train_models

log = get_logger(__name__)

T = TypeVar("T", bound=Task[Any, Any])


def with_retries(t: T, guard: RunGuard | None) -> T:
    """``t`` with the run's retry policy: at most retrain_retry_max retries, waiting
    retrain_retry_delay_minutes and then twice as long each time, each retry recorded."""
    if guard is None:
        return t
    policy = guard.policy
    delay_s = policy.retrain_retry_delay_minutes * 60.0
    delays = [delay_s * 2**k for k in range(policy.retrain_retry_max)]
    return t.with_options(  # type: ignore[return-value]
        retries=policy.retrain_retry_max,
        retry_delay_seconds=delays or 0,
        retry_condition_fn=guard.retry_condition(),
    )


@task(name="update_catalog", cache_policy=NO_CACHE)
def update_catalog(cfg: AppConfig, timeframe: str) -> dict[str, Any]:
    """Rebuild the dataset catalog from the canonical partitions (spec: the catalog is
    refreshed at the start of every retraining and is the only index training reads)."""
    cfg.core.labels_at(timeframe)  # a timeframe without a label policy or time stop: refused
    cfg.backtest.execution_at(timeframe)
    summary = build_catalog(cfg)
    summary.check_complete()  # a partition left out is not a smaller training set
    choice = pairs_at(cfg, Catalog(cfg), timeframe)
    for line in choice.skipped:
        log.info("pair skipped", timeframe=timeframe, reason=line)
        stage_done("skip", line)
    return {
        "partitions": summary.partitions,
        "included": summary.included,
        "excluded": summary.excluded,
        "catalog_hash": summary.catalog_hash,
        "pairs": choice.pair_ids,
        "skipped": choice.skipped,
    }


@task(name="pair_features", cache_policy=NO_CACHE)
def pair_features(cfg: AppConfig, pair_id: str, timeframe: str) -> LabelledPair:
    """Build (or reuse) one pair's cached features and label them."""
    pair = next((p for p in cfg.universe.pairs if p.pair_id == pair_id), None)
    if pair is None:
        raise MissingInputError(
            "UNIVERSE_PAIR_UNKNOWN",
            f"pair {pair_id!r} is not in universe.yaml "
            f"{[p.pair_id for p in cfg.universe.pairs]}: add it there or use a listed pair",
        )
    return label_pair(cfg, Catalog(cfg), pair, timeframe)


@task(name="train_calibrate", cache_policy=NO_CACHE)
def train_calibrate(
    cfg: AppConfig, timeframe: str, seed: int | None, labelled: dict[str, LabelledPair]
) -> TrainReport:
    """Train and calibrate AI1/AI2/AI3 and the direction ensemble; writes the model version
    with its metrics.json and checksums.json."""
    return train_models(cfg, Catalog(cfg), timeframe, seed=seed, labelled=labelled)


@task(name="register_version", cache_policy=NO_CACHE)
def register_version(registry: Registry, folder: Path, notes: str) -> ModelRecord:
    """Register the new version as draft with its lineage (archived in the artifact store)."""
    return registry.register(folder, actor="core_retrain_flow", notes=notes)


@task(name="theta_search", cache_policy=NO_CACHE)
def theta_search(
    cfg: AppConfig, folder: Path, baseline: Path | None, registry: Registry
) -> ThetaRun:
    """θ1/θ2: coarse grid, then Optuna, then stabilisation against the θ in force."""
    return optimize_theta(
        cfg,
        Catalog(cfg),
        folder,
        baseline_folder=baseline,
        restore=lambda v: registry.restore(v, actor="loader"),
    )


@task(name="backtest", cache_policy=NO_CACHE)
def backtest(
    cfg: AppConfig, folder: Path, baseline: Path | None, theta_run: ThetaRun, registry: Registry
) -> BacktestReport:
    """The test-window backtest at the adopted θ, stress scenarios, gates, HTML report."""
    return run_backtest(
        cfg,
        Catalog(cfg),
        folder,
        baseline_folder=baseline,
        theta_run=theta_run,
        restore=lambda v: registry.restore(v, actor="loader"),
    )


@task(name="adoption_checklist", cache_policy=NO_CACHE)
def checklist(
    cfg: AppConfig, folder: Path, recorded: dict[str, str], previous: Path | None = None
) -> Checklist:
    """The adoption checklist of the version (its files against ``recorded``, the registry's
    checksums; against ``previous``, the previously deployed version, when there is one)."""
    bt = cfg.paths.reports / "backtest" / folder.name
    return adoption_checklist(folder, bt, recorded, cfg, previous)
