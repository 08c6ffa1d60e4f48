"""A running worker moves to another model version, θ or config version between two batches,
without a restart and keeping each pair's state (position, hold count, last bar, feature
state, the bars waiting for their other leg, the read positions).

The new version is loaded and checked first exactly as at start-up (the registry's checksums,
its ``decision.json``, the pairs and timeframe it was trained on, θ in range); anything failing
refuses the whole swap: the worker goes on serving what it served, logs one line and records a
``CORE_SERVING_SWAP_REFUSED`` alert (fail closed). A pair whose feature windows change is
re-warmed on the catalog's bars up to its last bar; its position is kept."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlcore.config import AppConfig, load_config
from mlcore.errors import MlcoreError
from mlcore.execution import PairModels, check_serving, version_config
from mlcore.features import PAIR_FEATURES, PairFeatureEngine
from mlcore.serving._delivery import replay_names
from mlcore.serving._pair import PairSetupLive
from mlcore.serving._scorer import PairScorer
from mlcore.serving._setup import history, pair_setup, serving_at
from mlcore.serving._target import ServingTarget, read_target

if TYPE_CHECKING:
    from mlcore.serving._worker import Worker, WorkerSpec

log = logging.getLogger("mlcore.serving")
_Z = PAIR_FEATURES.index("z")


class ModelUnusable(ValueError):
    """The model version handed to a worker fails its checks."""


class SwapRefused(ValueError):
    """A target a running worker will not move to (it keeps serving the current one)."""


@dataclass(frozen=True)
class Loaded:
    """A model version loaded and cleared for a worker's pairs."""

    scorer: PairScorer
    params_sha256: str
    cfg: AppConfig  # the base configuration with the version's decision sections


def base_config(spec: WorkerSpec) -> AppConfig:
    """The configuration a worker reads from its config folder, at the timeframe it was
    started at (``mlcore serve --timeframe``), with replay names for a replay."""
    cfg = serving_at(load_config(Path(spec.config_root), spec.env_name), spec.timeframe)
    if spec.replay_redis:
        serving = cfg.serving.model_copy(update={"redis": replay_names(cfg.serving.redis)})
        cfg = dataclasses.replace(cfg, serving=serving)
    return cfg


def load_version(
    base: AppConfig, folder: Path, sums: dict[str, str] | None, pair_ids: list[str]
) -> Loaded:
    """Load the version in ``folder`` (checked against ``sums``, else its own checksums) for
    ``pair_ids``: ``ModelUnusable`` when its files fail, ``ConfigError`` when it was not
    trained on those pairs or at the serving timeframe."""
    try:
        models = PairModels.load(folder, sums=sums)
    except ValueError as exc:
        raise ModelUnusable(str(exc)) from None
    # What decides the signals is the version's (decision.json), never today's policy files.
    params = models.decision_params()
    check_serving(params, pair_ids, base.serving.timeframe)
    return Loaded(PairScorer(models), params.sha256, version_config(base, params))


@dataclass(frozen=True)
class _Prepared:
    target: ServingTarget
    base: AppConfig
    loaded: Loaded
    setups: dict[str, PairSetupLive]
    engines: dict[str, tuple[PairFeatureEngine, float]]


def _prepare(worker: Worker, target: ServingTarget) -> _Prepared:
    """Everything the swap needs, built and checked before anything changes."""
    try:
        base = worker.base_cfg if target.config_version == worker.config_version else (
            base_config(worker.spec))  # fmt: skip
        if base.serving.timeframe != worker.cfg.serving.timeframe:
            raise SwapRefused(
                f"the config version serves {base.serving.timeframe}, this worker "
                f"{worker.cfg.serving.timeframe}: restart the workers to change the timeframe"
            )
        sums = dict(target.model_checksums) or None
        loaded = load_version(base, Path(target.model_folder), sums, list(worker.pairs))
        specs = {p.pair_id: p for p in loaded.cfg.universe.pairs}
        setups, engines = {}, {}
        for pid, rt in worker.pairs.items():
            pair = specs[pid]
            legs = (rt.setup.leg_a.symbol, rt.setup.leg_b.symbol)
            if (pair.leg_a, pair.leg_b) != legs:
                raise SwapRefused(f"{pid}: legs {pair.leg_a}/{pair.leg_b} instead of "
                                  f"{legs[0]}/{legs[1]}")  # fmt: skip
            setups[pid] = pair_setup(loaded.cfg, pair, target.theta, loaded.params_sha256)
            if setups[pid].windows != rt.setup.windows:
                until = rt.last_ts_ns + 1 if rt.last_ts_ns >= 0 else worker.spec.warm_until_ns
                bars, _ = history(loaded.cfg, pair, until)
                engine = PairFeatureEngine(setups[pid].windows)
                feats = engine.warm(bars, threads=1)
                engines[pid] = (engine, float(feats[-1, _Z]) if len(feats) else math.nan)
    except SwapRefused:
        raise
    except (MlcoreError, ValueError, OSError, KeyError, TypeError) as exc:
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise SwapRefused(text) from None
    return _Prepared(target, base, loaded, setups, engines)


def _apply(worker: Worker, p: _Prepared) -> None:
    """Switch every pair at once (nothing here can fail)."""
    for pid, rt in worker.pairs.items():
        rt.swap(p.setups[pid], p.loaded.scorer, p.target.model_registered, p.engines.get(pid))
    worker.scorer, worker.version = p.loaded.scorer, p.loaded.scorer.version
    worker.params_sha256, worker.cfg, worker.base_cfg = p.loaded.params_sha256, p.loaded.cfg, p.base
    worker.config_version, worker.theta = p.target.config_version, p.target.theta
    worker.target_seq = p.target.seq
    worker.guard.retune(p.loaded.cfg)  # the drawdown limits of what is now in force
    worker.touch_all()


def _same(worker: Worker, target: ServingTarget) -> bool:
    return (
        Path(target.model_folder) == Path(worker.model_folder)
        and target.theta == worker.theta
        and target.config_version == worker.config_version
    )


def poll_target(worker: Worker) -> None:
    """Between batches: move to a newer target when ``target.json`` names one."""
    if not worker.target_watch.changed():
        return
    where = f"{worker.spec.worker_id}: serving target {worker.target_watch.path}"
    try:
        target = read_target(worker.root)
    except ValueError as exc:
        _refuse(worker, None, f"{where}: {exc}")
        return
    if target is None or target.seq <= max(worker.target_seq, worker.refused_seq):
        return
    if _same(worker, target):
        worker.target_seq = target.seq
        return
    t0 = time.perf_counter()
    try:
        prepared = _prepare(worker, target)
    except SwapRefused as exc:
        _refuse(worker, target, f"{where} #{target.seq} ({target.model_version}) refused: {exc}")
        return
    before = (worker.version, worker.theta, worker.config_version)
    _apply(worker, prepared)
    worker.model_folder = target.model_folder
    log.info(
        "hot swap #%d: %s θ %s config %s -> %s θ %s config %s (params %s, %.0f ms, no restart)",
        target.seq, *before, worker.version, list(worker.theta), worker.config_version,
        worker.params_sha256[:12], (time.perf_counter() - t0) * 1000,
    )  # fmt: skip


def _refuse(worker: Worker, target: ServingTarget | None, message: str) -> None:
    """Fail closed: keep serving, say it once, record the alert."""
    if target is not None:
        worker.refused_seq = target.seq
    log.error("%s; still serving %s", message, worker.version)
    worker.intake.alert(
        "CORE_SERVING_SWAP_REFUSED", f"{message}; still serving {worker.version}",
        {"worker": worker.spec.worker_id, "seq": None if target is None else target.seq,
         "refused": None if target is None else target.model_version,
         "serving": worker.version},
    )  # fmt: skip
