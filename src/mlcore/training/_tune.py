"""Hyperparameter search with Optuna (TPE, seeded) inside the purged CV of the development part.

Each trial trains the model on every purged fold of the events before the out-of-sample test
part and scores the folds it did not see: mean log loss for AI1 (lower is better), mean
PR-AUC for AI2 (higher), mean RMSE for AI3 (lower). The test part is never looked at, so the
out-of-sample metrics of the final model stay honest. Same data and seed, same trials.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import optuna
import sqlalchemy
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import Progress

from mlcore.training._binary import BinaryTrainConfig, _cross_validate, split_points
from mlcore.training._regress import cross_validate_regressor

Goal = Literal["logloss", "pr_auc", "rmse"]


def _suggest(
    trial: optuna.Trial | optuna.trial.FixedTrial, cfg: BinaryTrainConfig
) -> BinaryTrainConfig:
    return replace(
        cfg,
        learning_rate=trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        num_leaves=trial.suggest_int("num_leaves", 4, 63, log=True),
        min_child_samples=trial.suggest_int("min_child_samples", 5, 200, log=True),
        colsample_bytree=trial.suggest_float("colsample_bytree", 0.5, 1.0),
        reg_lambda=trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    )


@dataclass(frozen=True)
class SharedStudy:
    """An Optuna study in a database (PostgreSQL) that several worker processes fill together:
    each runs trials until the study holds ``n_trials`` finished ones. Studies are named by
    ``prefix`` and a hash of the data and settings, so workers on the same inputs meet in one.
    Trials then run in whatever order the workers take them: results are not byte-reproducible
    the way a single seeded in-process study is."""

    storage_url: str
    prefix: str = "mlcore"


def _study_name(shared: SharedStudy, label: str, key: bytes) -> str:
    digest = hashlib.sha256(key).hexdigest()[:16]
    return f"{shared.prefix}-{label.split()[0].lower()}-{digest}"


@contextmanager
def _one_at_a_time(url: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock (session level) for the block; other databases: none."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            locking = conn.dialect.name == "postgresql"
            if locking:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(727273)"))
            try:
                yield
            finally:
                if locking:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(727273)"))
    finally:
        engine.dispose()


def run_study(
    objective: Callable[[optuna.Trial], float], n_trials: int, seed: int, maximize: bool,
    label: str, shared: SharedStudy | None = None, key: bytes = b"",
) -> optuna.Study:  # fmt: skip
    """A seeded TPE study of ``n_trials``, with a transient progress bar on stderr; with
    ``shared``, this process's share of a database study (``key`` names the inputs)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    direction: Literal["maximize", "minimize"] = "maximize" if maximize else "minimize"
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = []
    if shared is None:
        study = optuna.create_study(direction=direction,
                                    sampler=optuna.samplers.TPESampler(seed=seed))  # fmt: skip
    else:
        # Optuna creates its tables on first use: two workers starting together on a fresh
        # database would both try (and one fail), so they take turns until the study exists.
        # Each worker samples with its own seed, or all would propose the same settings.
        with _one_at_a_time(shared.storage_url):
            study = optuna.create_study(
                storage=optuna.storages.RDBStorage(shared.storage_url),
                study_name=_study_name(shared, label, key), direction=direction,
                load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=seed + os.getpid()),
            )  # fmt: skip
        callbacks.append(MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE,)))
        objective = _tagged(objective)
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"tuning {label}", total=n_trials)
        callbacks.append(lambda *_: progress.advance(task))
        study.optimize(objective, n_trials=n_trials, callbacks=callbacks)
    return study


def _tagged(objective: Callable[[optuna.Trial], float]) -> Callable[[optuna.Trial], float]:
    def run(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return objective(trial)

    return run


def tune(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, cfg: BinaryTrainConfig,
    goal: Goal, n_trials: int, label: str = "", shared: SharedStudy | None = None,
) -> tuple[BinaryTrainConfig, dict[str, Any]]:  # fmt: skip
    """Search ``n_trials`` settings; return ``cfg`` with the best ones and a summary.
    ``shared`` spreads the trials over every process tuning the same inputs."""
    if n_trials < 1:
        return cfg, {"trials": 0}
    # The training part only: the calibration part is where the backtest searches θ, so the
    # settings must not be chosen on it either.
    cal_start, _ = split_points(len(y), cfg)
    dev = np.arange(cal_start)
    dev = dev[t1[dev] < t0[cal_start]]
    sign = 1.0 if goal == "pr_auc" else -1.0

    def objective(trial: optuna.Trial) -> float:
        trial_cfg = _suggest(trial, cfg)
        if goal == "rmse":
            folds, _ = cross_validate_regressor(X, y, t0, t1, dev, trial_cfg)
        else:
            folds, _, _ = _cross_validate(X, y, t0, t1, dev, trial_cfg)
        values = [f[goal] for f in folds if f[goal] is not None]
        return float(np.mean(values)) if values else -math.inf * sign

    key = b"".join((X.tobytes(), y.tobytes(), t0.tobytes(), t1.tobytes(), repr(cfg).encode(),
                    goal.encode()))  # fmt: skip
    study = run_study(objective, n_trials, cfg.seed, sign > 0, f"{label} ({goal})", shared, key)
    best = study.best_trial
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    workers = len({t.user_attrs.get("worker") for t in done})
    tuned = _suggest(optuna.trial.FixedTrial(best.params), cfg)
    summary = {
        "trials": len(done),
        "note": "the CV metrics reported with the model are those of the selected settings",
        "sampler": f"TPE(seed={cfg.seed})"
        if shared is None
        else f"TPE, shared study {study.study_name} ({workers} workers)",
        "goal": f"{'max' if sign > 0 else 'min'} mean CV {goal}",
        "best_value": best.value,
        "best_params": best.params,
        "values": [t.value for t in done],
    }
    return tuned, summary
