"""The four flows of the spec, chained as subflows so that one retraining run goes from the
catalog to a deployed model:

``core_retrain_flow``: catalog → per-pair features and labels (concurrent) → training with
calibration → metrics and registration (draft), then ``core_backtest_flow`` (which runs
``core_theta_opt_flow`` for θ, then the test-window backtest, stress and gates) and
``core_publish_flow`` (adoption checklist → registry → notice to serving).

Flows take only plain parameters (configuration location, version names), so a deployment can
start them; each loads the configuration itself. Every retraining run is one row of
``audit.retrain_runs`` (see :mod:`mlcore.flows._guard`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from mlcore._progress import stage_done
from mlcore.backtest import BacktestReport, ThetaRun
from mlcore.config import AppConfig, TaskRunnerPolicy, load_config
from mlcore.errors import MlcoreError, Severity
from mlcore.flows import _tasks as tasks
from mlcore.flows._guard import RunGuard, begin_run, log
from mlcore.flows._publish import SERVING_CHANNEL, Checklist, serving_notice, write_notice
from mlcore.flows._retention import apply_retention
from mlcore.governance import require_in_force
from mlcore.observability import Outcome, bind, deliver_pending, record_retrain
from mlcore.registry import ModelStatus, Registry, RunStatus, registry_for
from mlcore.training import TrainReport, TrainStatus


@dataclass
class PublishOutcome:
    """What ``core_publish_flow`` did with a version."""

    model_version: str
    status: ModelStatus
    checklist: Checklist
    notified: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    #: The notice on Redis that did not go out (the registry change stands): the CLI ends
    #: with it after saying what was done.
    notice_error: MlcoreError | None = None


@dataclass
class RetrainOutcome:
    """One retraining run, end to end."""

    run_id: str
    status: RunStatus
    model_version: str | None = None
    training: TrainReport | None = None
    backtest: BacktestReport | None = None
    publish: PublishOutcome | None = None
    retries: int = 0
    message: str = ""


def task_runner(policy: TaskRunnerPolicy) -> TaskRunner[Any]:
    """The task runner retrain_policy.yaml names: threads here, or Dask (a local cluster of
    processes, or a scheduler's address for several machines)."""
    if policy.kind == "dask":
        from prefect_dask.task_runners import DaskTaskRunner

        if policy.dask_address is not None:
            return DaskTaskRunner(address=policy.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": policy.max_workers,
                "threads_per_worker": 1,
                "processes": True,
            }
        )
    return ThreadPoolTaskRunner(max_workers=policy.max_workers)


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _config(config_root: str | None, config_env: str | None) -> AppConfig:
    """The configuration in force; once a governed version is applied, files edited by hand
    since are refused (CONFIG_GOV_DRIFT): a flow runs on what was approved."""
    cfg = load_config(Path(config_root) if config_root else None, config_env)
    require_in_force(cfg)
    return cfg


def _guard(cfg: AppConfig, registry: Registry, run_id: str | None) -> RunGuard | None:
    return None if run_id is None else RunGuard(registry, cfg.retrain, run_id)


def _baseline(registry: Registry, version: str) -> Path | None:
    """The model in service (for non-inferiority and the θ in force), unless it is ``version``."""
    deployed = registry.deployed()
    if deployed is None or deployed.model_version == version:
        return None
    return registry.served_folder(deployed.model_version)


@flow(name="core_theta_opt_flow", validate_parameters=False)
def core_theta_opt_flow(
    model_version: str,
    config_root: str | None = None,
    config_env: str | None = None,
    run_id: str | None = None,
) -> ThetaRun:
    """θ search for a model version: coarse grid → Optuna → constraints and stabilisation."""
    cfg = _config(config_root, config_env)
    registry = registry_for(cfg)
    guard = _guard(cfg, registry, run_id)
    if guard is not None:
        guard.step = "theta_search"
    folder = cfg.paths.models / model_version
    search = tasks.with_retries(tasks.theta_search, guard)
    theta: ThetaRun = search(cfg, folder, _baseline(registry, model_version), registry)
    stage_done("theta search", f"{theta.search.n_trials} settings")
    return theta


@flow(name="core_backtest_flow", validate_parameters=False)
def core_backtest_flow(
    model_version: str,
    config_root: str | None = None,
    config_env: str | None = None,
    run_id: str | None = None,
) -> BacktestReport:
    """Backtest a model version per backtest_policy.yaml: θ (subflow), test window, stress,
    adoption gates; writes bt_summary and the rest under reports/backtest/{version}/."""
    cfg = _config(config_root, config_env)
    registry = registry_for(cfg)
    theta = core_theta_opt_flow(model_version, config_root, config_env, run_id)
    guard = _guard(cfg, registry, run_id)
    if guard is not None:
        guard.step = "backtest"
    folder = cfg.paths.models / model_version
    run = tasks.with_retries(tasks.backtest, guard)
    report: BacktestReport = run(cfg, folder, _baseline(registry, model_version), theta, registry)
    stage_done("backtest", f"decision {report.decision}")
    return report


#: Seconds Redis has to connect and to answer the serving notice (a silent port must not hang).
REDIS_TIMEOUT_S = 10.0


def _notify(cfg: AppConfig, notice: dict[str, Any]) -> list[str]:
    """Tell serving: the notice file always (atomically), and Redis when REDIS_URL is set.
    Redis failing (the registry change already committed) is one coded error saying so:
    retryable (75) when Redis does not answer, else refused (69) or a bad REDIS_URL (2)."""
    path = cfg.paths.archive / "serving" / "deployed.json"
    write_notice(path, notice)
    sent = [str(path)]
    if cfg.env.redis_url:
        import redis

        from mlcore._redis import redis_failure

        version = notice.get("model_version", "?")
        try:
            client = redis.Redis.from_url(
                cfg.env.redis_url,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
            )
            try:
                body = json.dumps(notice, sort_keys=True)
                client.set(SERVING_CHANNEL, body)
                client.publish(SERVING_CHANNEL, body)
            finally:
                client.close()
        except (redis.RedisError, OSError) as exc:
            raise redis_failure(
                exc,
                cfg.env.redis_url,
                f"SET and PUBLISH {SERVING_CHANNEL}",
                prefix="FLOWS_NOTICE",
                before=f"{version} is deployed in the registry (that change stands) and the "
                f"notice file {path} is written (`mlcore serve` of the deployed version on this "
                "archive moves to it), but the notice on Redis did not go out (its subscribers "
                "were not told): ",
                retry=f"re-send it with `mlcore flows run publish --model {version}`",
            ) from None
        sent.append(f"redis {SERVING_CHANNEL}")
    return sent


#: The most a flow run spends delivering notifications at its end (the rest: next time).
FLOW_NOTIFY_BUDGET_S = 30.0


def deliver_notifications(cfg: AppConfig, registry: Registry) -> None:
    """Send what this run (and anything before it) alerted, without a separate daemon; the
    receiver away or the secrets unset, the rows stay for serving or the next run."""
    report = deliver_pending(registry.engine, cfg.slack, cfg.env, FLOW_NOTIFY_BUDGET_S)
    if report is not None and (report.delivered or report.retried or report.failed):
        log.info("notifications", delivered=report.delivered, retrying=report.retried,
                 failed=report.failed)  # fmt: skip


@flow(name="core_publish_flow", validate_parameters=False)
def core_publish_flow(
    model_version: str,
    config_root: str | None = None,
    config_env: str | None = None,
    run_id: str | None = None,
    actor: str = "core_publish_flow",
) -> PublishOutcome:
    """Adoption checklist → registry update (deployed, or rejected with the reasons) → notice
    to serving."""
    cfg = _config(config_root, config_env)
    registry = registry_for(cfg)
    guard = _guard(cfg, registry, run_id)
    if guard is not None:
        guard.step = "publish"
    folder = cfg.paths.models / model_version
    recorded = registry.get(model_version).checksums
    previous = _baseline(registry, model_version)
    check = tasks.with_retries(tasks.checklist, guard)(cfg, folder, recorded, previous)
    notes = check.notes()
    status = registry.get(model_version).status
    if not check.passed:
        if status is not ModelStatus.REJECTED:
            registry.transition(model_version, ModelStatus.REJECTED, actor=actor, notes=notes)
        log.info("model rejected", model_version=model_version, notes=notes)
    else:
        steps = [ModelStatus.CANDIDATE, ModelStatus.APPROVED] + (
            [ModelStatus.DEPLOYED] if cfg.retrain.deploy_on_adopt else []
        )
        for to in steps[steps.index(status) + 1 if status in steps else 0 :]:
            registry.transition(model_version, to, actor=actor, notes=notes, theta=check.theta)
    record = registry.get(model_version)
    notified: list[str] = []
    notice_error: MlcoreError | None = None
    if record.status is ModelStatus.DEPLOYED:
        try:
            notified = _notify(cfg, serving_notice(model_version, folder, check.theta))
        except MlcoreError as exc:  # the deployment stands; retention still runs
            notified = [str(cfg.paths.archive / "serving" / "deployed.json")]
            notice_error = exc
            log.error("serving notice not sent", model_version=model_version, code=exc.code,
                      error=exc.message)  # fmt: skip
            registry.raise_alert(
                "CORE_PUBLISH_NOTICE_FAILED",
                f"{model_version} is deployed but serving was not told: {exc.message[:500]}",
                channel=cfg.retrain.notification_channel, severity="error", run_id=run_id,
                details={"model_version": model_version, "code": exc.code},
            )  # fmt: skip
    log.info(
        "model published", model_version=model_version, status=record.status, notified=notified
    )
    # Retention: the newest model_versions stay, and never one deployed or deployed before.
    pruned = registry.prune(cfg.data_retention.model_versions, actor=actor)
    _retention(cfg, registry, actor)
    if run_id is None:  # run on its own (a subflow's parent delivers at its end)
        deliver_notifications(cfg, registry)
    return PublishOutcome(model_version, record.status, check, notified, pruned, notice_error)


def _retention(cfg: AppConfig, registry: Registry, actor: str) -> None:
    # Data retention after each publish; its failure (a held ingest lock, a full disk) is
    # alerted and leaves the published version alone.
    try:
        kept = apply_retention(cfg, registry, actor=actor)
    except (MlcoreError, OSError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        log.error("retention failed", error=message)
        registry.raise_alert(
            "CORE_RETENTION_FAILED", f"data retention failed: {message}",
            channel=cfg.retrain.notification_channel, severity="warning",
        )  # fmt: skip
        return
    log.info(
        "retention applied", pruned=kept.counts(), signals_to_history=kept.signals_to_history,
        signals_deleted=kept.signals_deleted, lineage_unknown=kept.lineage_unknown,
    )  # fmt: skip


@flow(name="core_retrain_flow", validate_parameters=False)
def core_retrain_flow(
    config_root: str | None = None,
    config_env: str | None = None,
    timeframe: str | None = None,
    seed: int | None = None,
    reason: str | None = None,
) -> RetrainOutcome:
    """One retraining run: catalog → features → train → calibrate → metrics → register, then
    backtest (with θ) and publish as subflows; recorded in audit.retrain_runs (with the
    ``reason`` it was started for, e.g. a drift trigger's, in its metrics)."""
    cfg = _config(config_root, config_env)
    timeframe = timeframe or cfg.retrain.timeframe
    registry = registry_for(cfg)
    guard = begin_run(registry, cfg.retrain, flow_run.get_id(), reason)
    outcome = RetrainOutcome(guard.run_id, RunStatus.RUNNING)
    bind(cfg)
    started = time.monotonic()
    try:
        with guard.heartbeat():
            guard.step = "update_catalog"
            catalog = tasks.with_retries(tasks.update_catalog, guard)(cfg, timeframe)
            stage_done("catalog", timeframe)
            guard.step = "pair_features"
            features = tasks.with_retries(tasks.pair_features, guard)
            futures = {
                pair_id: features.submit(cfg, pair_id, timeframe) for pair_id in catalog["pairs"]
            }
            labelled = {pair_id: f.result() for pair_id, f in futures.items()}
            stage_done("features+labels", f"{len(labelled)} pairs")
            guard.step = "train_calibrate"
            train = tasks.with_retries(tasks.train_calibrate, guard)
            report = train(cfg, timeframe, seed, labelled)
            outcome.model_version, outcome.training = report.model_version, report
            guard.step = "register_version"
            note = f"trained by retraining run {guard.run_id} (retrain_status {report.status})" + (
                f": {report.blocked_reasons}" if report.blocked_reasons else ""
            )
            tasks.with_retries(tasks.register_version, guard)(registry, report.folder, note)
            stage_done("register", f"{report.model_version} ({report.status})")
            if report.status is TrainStatus.BLOCKED:
                # Spec: a blocked training run is not judged for adoption.
                registry.transition(
                    report.model_version,
                    ModelStatus.REJECTED,
                    actor="core_retrain_flow",
                    notes=f"retrain_status=blocked: {report.blocked_reasons}",
                )
                outcome.status = RunStatus.ABORTED
                outcome.message = f"training blocked: {report.blocked_reasons}"
                guard.alert("CORE_RETRAIN_BLOCKED", f"{report.model_version} rejected: "
                            f"{outcome.message}", Severity.WARNING,
                            model_version=report.model_version)  # fmt: skip
                registry.finish_run(
                    guard.run_id,
                    RunStatus.ABORTED,
                    retry_count=guard.retry_count(),
                    model_version=report.model_version,
                    error_message=outcome.message,
                )
                record_retrain(time.monotonic() - started, Outcome.ABORTED)
                return outcome
            outcome.backtest = core_backtest_flow(
                report.model_version, config_root, config_env, guard.run_id
            )
            outcome.publish = core_publish_flow(
                report.model_version, config_root, config_env, guard.run_id
            )
            stage_done("publish", f"{report.model_version} is {outcome.publish.status}")
    except BaseException as exc:
        record_retrain(time.monotonic() - started, Outcome.FAILURE)
        try:
            guard.failed(exc)
        except Exception as record_exc:  # the run's own error matters more than its record
            log.error("retraining run not recorded as failed", run_id=guard.run_id,
                      error=repr(record_exc))  # fmt: skip
        raise
    finally:
        deliver_notifications(cfg, registry)
    record_retrain(time.monotonic() - started, Outcome.SUCCESS)
    outcome.retries = guard.retry_count()
    outcome.status = RunStatus.SUCCESS
    bt = outcome.backtest
    theta = tuple(bt.theta_run.stabilised.theta) if bt is not None else None
    summary = {
        "decision": bt.decision if bt is not None else None,
        "test": {k: _finite(bt.test.get(k)) for k in ("sharpe", "max_drawdown", "trades_per_year")}
        if bt is not None
        else None,
        "registry_status": outcome.publish.status if outcome.publish else None,
    } | ({"reason": reason} if reason is not None else {})
    registry.finish_run(
        guard.run_id,
        RunStatus.SUCCESS,
        retry_count=outcome.retries,
        model_version=outcome.model_version,
        theta=(float(theta[0]), float(theta[1])) if theta else None,
        metrics=summary,
    )
    outcome.message = f"{outcome.model_version} {outcome.publish.status}" if outcome.publish else ""
    return outcome
