"""Train the 3-class direction ensemble (spec 003) of one feature level: LightGBM and XGBoost
(multi-class, early stopping) and a scikit-learn random forest, soft vote with fixed weights.

The rows (bars, in time order) split into a development part and the out-of-sample test part
(the last ``test_share``), the boundary purged. Purged K-fold CV on the development part gives
per-fold and out-of-fold metrics of the ensemble; the final ensemble is fitted on the whole
development part (early stopping on its last ``early_stopping_share``, purged) and scored on
the test part. SMOTE, when enabled, oversamples only the rows a model is fitted on: never an
early-stopping, validation or test row. The leakage canary reruns the CV on labels shuffled
within blocks; its one-vs-rest AUC within (fold, block) strata must stay at 0.5 +- tolerance.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import xgboost as xgb
from imblearn.over_sampling import SMOTE
from numpy.typing import ArrayLike
from sklearn.ensemble import RandomForestClassifier

from mlcore.models import (
    CLASS_NAMES,
    COMPONENTS,
    forest_to_json,
    level_file_names,
    soft_vote,
    unit_rows,
)
from mlcore.training._binary import (
    BinaryTrainConfig,
    best_iteration,
    early_stopping_split,
    split_points,
    stratified_auc,
)
from mlcore.training._canary import run_canary
from mlcore.training._tune import run_study
from mlcore.validation import PurgedGroupedKFold, missing_metrics, multiclass_metrics

N_CLASSES = len(CLASS_NAMES)


@dataclass(frozen=True)
class DirectionTrainConfig:
    """How the ensemble is trained: the shared CV/boosting settings plus its own."""

    base: BinaryTrainConfig = field(default_factory=BinaryTrainConfig)
    weights: dict[str, float] = field(
        default_factory=lambda: {"lightgbm": 0.4, "xgboost": 0.4, "random_forest": 0.2}
    )
    rf_n_estimators: int = 100
    rf_max_depth: int = 8
    rf_min_samples_leaf: int = 100
    rf_max_features: float = 0.2
    rf_max_samples: float = 0.3
    smote: bool = False
    smote_k_neighbors: int = 5
    threads: int = 2
    canary_repeats: int = 1

    def lgbm_params(self) -> dict[str, Any]:
        """The binary LightGBM settings, multi-class."""
        p = self.base.lgbm_params() | {"objective": "multiclass", "num_class": N_CLASSES}
        p.pop("class_weight")
        return p

    def xgb_params(self) -> dict[str, Any]:
        """The binary XGBoost settings, multi-class (soft probabilities)."""
        return self.base.xgb_params() | {
            "objective": "multi:softprob", "num_class": N_CLASSES, "eval_metric": "mlogloss",
        }  # fmt: skip

    def rf_params(self) -> dict[str, Any]:
        """The forest's settings; one job and seeded: the same data gives the same trees."""
        return {
            "n_estimators": self.rf_n_estimators,
            "max_depth": self.rf_max_depth,
            "min_samples_leaf": self.rf_min_samples_leaf,
            "max_features": self.rf_max_features,
            "max_samples": self.rf_max_samples,
            "random_state": self.base.seed,
            "n_jobs": 1,
        }


@dataclass
class Components:
    """The three fitted models of one ensemble."""

    lightgbm: lgb.LGBMClassifier
    xgboost: xgb.XGBClassifier
    random_forest: RandomForestClassifier

    def proba(self, X: np.ndarray, weights: dict[str, float]) -> dict[str, np.ndarray]:
        """Each component's probabilities and the soft vote (key ``ensemble``)."""
        probas = {
            "lightgbm": unit_rows(self.lightgbm.predict_proba(X)),
            "xgboost": unit_rows(self.xgboost.predict_proba(X)),
            "random_forest": unit_rows(self.random_forest.predict_proba(X)),
        }
        return probas | {"ensemble": soft_vote(probas, weights)}


def _oversample(
    X: np.ndarray, y: np.ndarray, cfg: DirectionTrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    if not cfg.smote:
        return X, y
    smallest = int(np.bincount(y, minlength=N_CLASSES).min())
    k = min(cfg.smote_k_neighbors, smallest - 1)
    if k < 1:
        raise ValueError(f"SMOTE needs at least 2 rows of each class to fit on, got {smallest}")
    Xs, ys = SMOTE(k_neighbors=k, random_state=cfg.base.seed).fit_resample(X, y)
    return np.asarray(Xs, dtype=np.float64), np.asarray(ys, dtype=np.int64)


def fit_components(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, idx: np.ndarray,
    cfg: DirectionTrainConfig,
) -> Components:  # fmt: skip
    """Fit the three models on ``idx`` (time-ordered): the boosters stop early on its last
    share (purged); SMOTE, if on, touches only the fitting rows."""
    fit_idx, val_idx = early_stopping_split(t0, t1, idx, cfg.base)
    present = np.unique(y[fit_idx])
    if len(present) < N_CLASSES:
        raise ValueError(
            f"a training window of {len(idx)} bars has only classes "
            f"{[CLASS_NAMES[c] for c in present]} in its fitting part: every one of "
            f"{list(CLASS_NAMES)} is needed"
        )
    X_fit, y_fit = _oversample(X[fit_idx], y[fit_idx], cfg)
    stop = cfg.base.early_stopping_rounds
    booster = lgb.LGBMClassifier(**cfg.lgbm_params())
    booster.fit(
        X_fit, y_fit, eval_X=X[val_idx], eval_y=y[val_idx], eval_metric="multi_logloss",
        callbacks=[lgb.early_stopping(stop, verbose=False)],
    )  # fmt: skip
    xmodel = xgb.XGBClassifier(**cfg.xgb_params())
    xmodel.fit(X_fit, y_fit, eval_set=[(X[val_idx], y[val_idx])], verbose=False)
    forest = RandomForestClassifier(**cfg.rf_params())
    forest.fit(X_fit, y_fit)
    return Components(booster, xmodel, forest)


def cross_validate_direction(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, idx: np.ndarray,
    cfg: DirectionTrainConfig, prior: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:  # fmt: skip
    """Per-fold metrics of the ensemble, its out-of-fold probabilities and each row's fold."""
    b = cfg.base
    cv = PurgedGroupedKFold(b.n_folds, 1, b.purge_bars, b.embargo_bars, b.min_block_bars)
    oof = np.full((len(idx), N_CLASSES), np.nan)
    fold_of = np.full(len(idx), -1)
    splits = list(cv.split(X[idx], groups=t0[idx], label_end=t1[idx]))

    def fold(split: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        comps = fit_components(X, y, t0, t1, idx[split[0]], cfg)
        return comps.proba(X[idx[split[1]]], cfg.weights)["ensemble"]

    # Folds are independent and each fit is seeded: the threads change the time, not the result.
    with ThreadPoolExecutor(max_workers=cfg.threads) as pool:
        probas = list(pool.map(fold, splits))
    folds = []
    for k, ((tr, te), p) in enumerate(zip(splits, probas, strict=True)):
        oof[te] = p
        fold_of[te] = k
        folds.append(
            {"fold": k, "train": len(tr), "test": len(te)}
            | _without_curve(multiclass_metrics(y[idx[te]], p, prior))
        )
    return folds, oof, fold_of


def _without_curve(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "calibration_curve"}


@dataclass
class DirectionTrainResult:
    """One level's fitted ensemble and what was measured."""

    level: int
    columns: list[str]
    components: Components
    weights: dict[str, float]
    metrics: dict[str, Any]
    blocked_reasons: list[str]

    def files(self) -> dict[str, bytes]:
        """The level's files (native formats): metadata, LightGBM text, XGBoost JSON cut at
        its best iteration, and the forest's trees as JSON."""
        names = level_file_names(self.level)
        xgb_kept = self.components.xgboost.get_booster()[: best_iteration(self.components.xgboost)]
        meta = {
            "level": self.level,
            "columns": self.columns,
            "classes": list(CLASS_NAMES),
            "weights": self.weights,
            "components": {c: names[c] for c in COMPONENTS},
        }
        return {
            names["meta"]: (json.dumps(meta, sort_keys=True, indent=2) + "\n").encode(),
            names["lightgbm"]: self.components.lightgbm.booster_.model_to_string().encode(),
            names["xgboost"]: bytes(xgb_kept.save_raw("json")),
            names["random_forest"]: forest_to_json(self.components.random_forest),
        }


def _dev_part(
    t0: np.ndarray, t1: np.ndarray, n: int, cfg: DirectionTrainConfig
) -> tuple[np.ndarray, int]:
    """The development rows (before the test part, purged) and where the test part starts."""
    _, test_start = split_points(n, replace(cfg.base, calibration_share=0.0))
    dev = np.arange(test_start)
    return dev[t1[dev] < t0[test_start]], test_start


def train_direction(
    X: ArrayLike, y: ArrayLike, t0: ArrayLike, t1: ArrayLike, cfg: DirectionTrainConfig,
    level: int, feature_names: list[str],
) -> DirectionTrainResult:  # fmt: skip
    """Train, score and canary-check one level's ensemble (see the module docstring).

    ``X``: the level's features per bar (rows in time order, finite), ``y``: 0 SELL, 1 HOLD,
    2 BUY; ``t0``/``t1``: the bar of each row and the bar its label ends.
    """
    X_arr = np.asarray(X, dtype=np.float64)
    y_arr = np.asarray(y)
    t0_arr = np.asarray(t0, dtype=np.int64)
    t1_arr = np.asarray(t1, dtype=np.int64)
    n = len(y_arr)
    if X_arr.ndim != 2 or X_arr.shape != (n, len(feature_names)):
        raise ValueError(
            f"X must be n x {len(feature_names)} (one column per feature name), got {X_arr.shape}"
        )
    if t0_arr.shape != (n,) or t1_arr.shape != (n,):
        raise ValueError(f"t0 and t1 must have length {n}, got {t0_arr.shape} and {t1_arr.shape}")
    if not np.isin(y_arr, range(N_CLASSES)).all():
        raise ValueError("y must hold 0 (SELL), 1 (HOLD), 2 (BUY) only (drop unlabelled bars)")
    if not np.isfinite(X_arr).all():
        raise ValueError("X must be finite (drop rows with missing features first)")
    if np.any(np.diff(t0_arr) < 0) or np.any(t1_arr < t0_arr):
        raise ValueError("rows must be in time order (t0 non-decreasing) with t1 >= t0")
    y_arr = y_arr.astype(np.int64)
    dev, test_start = _dev_part(t0_arr, t1_arr, n, cfg)
    test = np.arange(test_start, n)
    prior = np.bincount(y_arr[dev], minlength=N_CLASSES) / len(dev)
    folds, oof, _ = cross_validate_direction(X_arr, y_arr, t0_arr, t1_arr, dev, cfg, prior)
    comps = fit_components(X_arr, y_arr, t0_arr, t1_arr, dev, cfg)
    probas = comps.proba(X_arr[test], cfg.weights)
    metrics: dict[str, Any] = {
        "level": level,
        "columns": list(feature_names),
        "rows": {"development": len(dev), "test": len(test)},
        "class_names": list(CLASS_NAMES),
        "cv_folds": folds,
        "cv_out_of_fold": multiclass_metrics(y_arr[dev], oof, prior),
        "oos": multiclass_metrics(y_arr[test], probas["ensemble"], prior),
        "oos_components": {
            c: _without_curve(multiclass_metrics(y_arr[test], probas[c], prior)) for c in COMPONENTS
        },
        "best_iteration": {
            "lightgbm": best_iteration(comps.lightgbm),
            "xgboost": best_iteration(comps.xgboost),
        },
        "weights": cfg.weights,
        "smote": cfg.smote,
        "feature_importance": _importance(comps, feature_names, cfg.weights),
    }
    if cfg.canary_repeats > 0:
        metrics["canary"] = _canary(X_arr, y_arr, t0_arr, t1_arr, dev, cfg)
    else:  # benchmarks only: the policy file requires at least one repeat
        metrics["canary"] = {"skipped": True, "passed": True, "auc_mean": None, "aucs": []}
    reasons = [
        f"level {level} {part}: missing {names}"
        for part in ("cv_out_of_fold", "oos")
        if (names := missing_metrics(metrics[part]))
    ]
    if not metrics["canary"]["passed"]:
        reasons.append(
            f"level {level} leakage canary: control AUC {metrics['canary']['auc_mean']:.3f} "
            f"outside 0.5 +- {cfg.base.canary_tolerance}"
        )
    return DirectionTrainResult(level, list(feature_names), comps, cfg.weights, metrics, reasons)


def _canary(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, dev: np.ndarray,
    cfg: DirectionTrainConfig,
) -> dict[str, Any]:  # fmt: skip
    def score(y_ctl: np.ndarray, block: np.ndarray) -> float | None:
        _, oof, fold_of = cross_validate_direction(X, y_ctl, t0, t1, dev, cfg)
        strata = fold_of * (block.max() + 1) + block
        per_class = [
            stratified_auc((y_ctl[dev] == c).astype(np.int64), oof[:, c], strata)
            for c in range(N_CLASSES)
        ]
        defined = [a for a in per_class if a is not None]
        return float(np.mean(defined)) if defined else None

    b = cfg.base
    return run_canary(
        y, t0, dev, b.canary_block_bars, cfg.canary_repeats, b.canary_tolerance, b.seed, score,
        "one-vs-rest ROC AUC within (CV fold, block) strata, mean over classes",
    )  # fmt: skip


def _importance(comps: Components, names: list[str], weights: dict[str, float]) -> dict[str, Any]:
    """Normalised gain (boosters) and impurity decrease (forest), and their weighted mean."""
    scores = comps.xgboost.get_booster().get_score(importance_type="total_gain")
    raw = {
        "lightgbm": comps.lightgbm.booster_.feature_importance(importance_type="gain"),
        "xgboost": np.array([scores.get(f"f{i}", 0.0) for i in range(len(names))]),
        "random_forest": comps.random_forest.feature_importances_,
    }
    norm = {c: np.asarray(v, dtype=np.float64) / (float(np.sum(v)) or 1.0) for c, v in raw.items()}
    total = sum(weights.values())
    mean = np.zeros(len(names))
    for c in COMPONENTS:
        mean += norm[c] * (weights[c] / total)
    out: dict[str, Any] = {c: dict(zip(names, map(float, v), strict=True)) for c, v in norm.items()}
    out["ensemble"] = dict(zip(names, map(float, mean), strict=True))
    return out


def tune_direction(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, cfg: DirectionTrainConfig,
    n_trials: int, label: str = "direction",
) -> tuple[DirectionTrainConfig, dict[str, Any]]:  # fmt: skip
    """Optuna TPE (seeded) over the boosters' and the forest's main settings, minimising the
    ensemble's mean CV log loss on the development part; the test part is never seen."""
    if n_trials < 1:
        return cfg, {"trials": 0}
    dev, _ = _dev_part(t0, t1, len(y), cfg)

    def suggest(trial: optuna.Trial | optuna.trial.FixedTrial) -> DirectionTrainConfig:
        base = replace(
            cfg.base,
            learning_rate=trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            num_leaves=trial.suggest_int("num_leaves", 4, 63, log=True),
            min_child_samples=trial.suggest_int("min_child_samples", 5, 400, log=True),
            colsample_bytree=trial.suggest_float("colsample_bytree", 0.5, 1.0),
            reg_lambda=trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        )
        return replace(
            cfg, base=base,
            rf_max_depth=trial.suggest_int("rf_max_depth", 3, 16),
            rf_min_samples_leaf=trial.suggest_int("rf_min_samples_leaf", 10, 400, log=True),
        )  # fmt: skip

    def objective(trial: optuna.Trial) -> float:
        folds, _, _ = cross_validate_direction(X, y, t0, t1, dev, suggest(trial))
        values = [f["logloss"] for f in folds]
        return float(np.mean(values)) if values else math.inf

    study = run_study(objective, n_trials, cfg.base.seed, False, f"{label} (logloss)")
    best = study.best_trial
    summary = {
        "trials": n_trials,
        "sampler": f"TPE(seed={cfg.base.seed})",
        "goal": "min mean CV logloss of the soft vote",
        "best_value": best.value,
        "best_params": best.params,
        "values": [t.value for t in study.trials],
    }
    return suggest(optuna.trial.FixedTrial(best.params)), summary
