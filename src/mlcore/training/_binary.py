"""Train, calibrate and check a binary LightGBM model on time-ordered events (AI1, AI2).

The events are split in time into a training part, a calibration part and an out-of-sample
test part (the last ``test_share``), each boundary purged so that no earlier label reaches into
the next part. On the training and calibration parts together, purged K-fold CV gives per-fold
and out-of-fold metrics; the final model is fitted on the training part (early stopping on its
last ``early_stopping_share``, purged), calibrated isotonically on the calibration part and
scored on the test part, raw and calibrated.

The leakage canary runs the CV again on control targets shuffled within blocks of bars
(several seeded shuffles): their out-of-fold ROC AUC, compared within strata of (CV fold,
block), must stay within 0.5 +- tolerance. A higher score means labels reach the model through
the pipeline, and the run is blocked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import xgboost as xgb
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

from mlcore.execution import IsotonicCalibrator
from mlcore.training._calibration import fit_isotonic
from mlcore.training._canary import run_canary
from mlcore.training._verdict import binary_verdict
from mlcore.validation import PurgedGroupedKFold, binary_metrics, missing_metrics


@dataclass(frozen=True)
class BinaryTrainConfig:
    """How a binary model is trained and checked (defaults: the spec's CV settings)."""

    n_folds: int = 5
    purge_bars: int = 24
    embargo_bars: int = 24
    min_block_bars: int = 240
    test_share: float = 0.2
    calibration_share: float = 0.2
    early_stopping_share: float = 0.15
    early_stopping_rounds: int = 30
    max_rounds: int = 500
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    class_weight: dict[int, float] | None = None
    canary_block_bars: int = 480
    canary_repeats: int = 5
    canary_tolerance: float = 0.03
    seed: int = 7
    # Tuned regularisation (Optuna): column subsampling share and L2 penalty on leaf values.
    colsample_bytree: float = 1.0
    reg_lambda: float = 0.0
    library: str = "lightgbm"  # or "xgboost"

    def lgbm_params(self) -> dict[str, Any]:
        """LightGBM parameters; deterministic, one thread, seeded: same data, same bytes."""
        return {
            "objective": "binary",
            "n_estimators": self.max_rounds,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "class_weight": self.class_weight,
            "random_state": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "n_jobs": 1,
            "verbose": -1,
        }

    def xgb_params(self) -> dict[str, Any]:
        """The same settings for XGBoost (hist trees grown leaf-wise like LightGBM's)."""
        return {
            "objective": "binary:logistic",
            "n_estimators": self.max_rounds,
            "learning_rate": self.learning_rate,
            "max_leaves": self.num_leaves,
            "grow_policy": "lossguide",
            "max_depth": 0,
            "min_child_weight": float(self.min_child_samples) / 10.0,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "tree_method": "hist",
            "early_stopping_rounds": self.early_stopping_rounds,
            "eval_metric": "logloss",
            "random_state": self.seed,
            "n_jobs": 1,
        }


def best_iteration(model: Any) -> int:
    """Rounds kept after early stopping (LightGBM or XGBoost)."""
    it = getattr(model, "best_iteration_", None)
    if it is None:
        it = getattr(model, "best_iteration", 0) + 1  # XGBoost counts from 0
    return int(it)


def model_bytes(model: Any) -> tuple[str, bytes]:
    """The model in its library's native format: (file suffix, bytes)."""
    if isinstance(model, xgb.XGBModel):
        # Only the rounds early stopping kept, so the stored booster predicts as the model does.
        kept = model.get_booster()[: best_iteration(model)]
        return "xgb.json", bytes(kept.save_raw("json"))
    # LightGBM saves up to its best iteration by default.
    return "lgbm.txt", model.booster_.model_to_string().encode()


@dataclass
class BinaryTrainResult:
    """The fitted model, its calibrator and everything measured on the way."""

    model: Any  # lightgbm.LGBMClassifier or xgboost.XGBClassifier
    calibrator: IsotonicCalibrator
    metrics: dict[str, Any]
    blocked_reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``ok`` or ``blocked`` (see :attr:`blocked_reasons`)."""
        return "blocked" if self.blocked_reasons else "ok"


def split_points(n: int, cfg: BinaryTrainConfig) -> tuple[int, int]:
    """Positions where the calibration part and the test part start, for ``n`` events."""
    test_start = int(n * (1.0 - cfg.test_share))
    cal_start = int(n * (1.0 - cfg.test_share - cfg.calibration_share))
    return cal_start, test_start


def _purged_before(t0: np.ndarray, t1: np.ndarray, idx: np.ndarray, start: int) -> np.ndarray:
    """Samples of ``idx`` whose label ends before bar ``start``."""
    kept: np.ndarray = idx[t1[idx] < start]
    return kept


def early_stopping_split(
    t0: np.ndarray, t1: np.ndarray, idx: np.ndarray, cfg: BinaryTrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, early-stopping) parts of a time-ordered training window: the last share stops
    early; fitting samples whose label reaches into it are purged."""
    cut = int(len(idx) * (1.0 - cfg.early_stopping_share))
    if cut < 1 or cut >= len(idx):
        raise ValueError(f"a training window of {len(idx)} samples is too small to fit and stop")
    fit_idx = _purged_before(t0, t1, idx[:cut], int(t0[idx[cut]]))
    if len(fit_idx) == 0:
        raise ValueError(
            f"a training window of {len(idx)} samples has nothing left to fit after purging "
            "the labels that reach its early-stopping part"
        )
    return fit_idx, idx[cut:]


def fit_early_stopped(
    model: Any, X: np.ndarray, y: np.ndarray, parts: tuple[np.ndarray, np.ndarray],
    cfg: BinaryTrainConfig, eval_metric: str,
) -> Any:  # fmt: skip
    """Fit a LightGBM scikit-learn estimator on the fitting part, stopping on the other."""
    fit_idx, val_idx = parts
    model.fit(
        X[fit_idx], y[fit_idx], eval_X=X[val_idx], eval_y=y[val_idx], eval_metric=eval_metric,
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
    )  # fmt: skip
    return model


def _fit(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, idx: np.ndarray,
    cfg: BinaryTrainConfig,
) -> Any:  # fmt: skip
    """Fit on ``idx`` (time-ordered), early stopping on its last share (purged)."""
    fit_idx, val_idx = parts = early_stopping_split(t0, t1, idx, cfg)
    if len(np.unique(y[fit_idx])) < 2 or len(np.unique(y[val_idx])) < 2:
        raise ValueError(
            f"a training window of {len(idx)} events has a single class in its fitting or "
            "early-stopping part: too few events or labels of one kind"
        )
    if cfg.library == "xgboost":
        weights = None
        if cfg.class_weight is not None:
            weights = np.array([cfg.class_weight[int(v)] for v in y[fit_idx]])
        xmodel = xgb.XGBClassifier(**cfg.xgb_params())
        xmodel.fit(
            X[fit_idx], y[fit_idx], sample_weight=weights,
            eval_set=[(X[val_idx], y[val_idx])], verbose=False,
        )  # fmt: skip
        return xmodel
    if cfg.library != "lightgbm":
        raise ValueError(f"library must be 'lightgbm' or 'xgboost', got {cfg.library!r}")
    model = lgb.LGBMClassifier(**cfg.lgbm_params())
    fitted: lgb.LGBMClassifier = fit_early_stopped(model, X, y, parts, cfg, "binary_logloss")
    return fitted


def _cross_validate(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, idx: np.ndarray,
    cfg: BinaryTrainConfig,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:  # fmt: skip
    """Per-fold metrics, out-of-fold scores (raw probabilities) and the fold of each sample,
    over ``idx``."""
    cv = PurgedGroupedKFold(cfg.n_folds, 1, cfg.purge_bars, cfg.embargo_bars, cfg.min_block_bars)
    oof = np.full(len(idx), np.nan)
    fold_of = np.full(len(idx), -1)
    folds = []
    for k, (tr, te) in enumerate(cv.split(X[idx], groups=t0[idx], label_end=t1[idx])):
        model = _fit(X, y, t0, t1, idx[tr], cfg)
        p = np.asarray(model.predict_proba(X[idx[te]]))[:, 1]
        oof[te] = p
        fold_of[te] = k
        folds.append(
            {"fold": k, "train": len(tr), "test": len(te), "best_iteration": best_iteration(model)}
            | binary_metrics(y[idx[te]], p)
        )
    return folds, oof, fold_of


def stratified_auc(y: np.ndarray, score: np.ndarray, strata: np.ndarray) -> float | None:
    """ROC AUC over the (positive, negative) pairs that share a stratum: the mean of each
    stratum's AUC weighted by its number of such pairs (None when no stratum has both)."""
    total = weight = 0.0
    for s in np.unique(strata):
        m = strata == s
        n_pos = int(y[m].sum())
        n_neg = int(m.sum()) - n_pos
        if n_pos and n_neg:
            total += float(roc_auc_score(y[m], score[m])) * n_pos * n_neg
            weight += n_pos * n_neg
    return total / weight if weight else None


LabelFeatures = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def recent_hit_rate(y: np.ndarray, t0: np.ndarray, t1: np.ndarray, window: int = 20) -> np.ndarray:
    """For each event, the label mean of the last ``window`` events resolved (t1) before it
    starts (t0); NaN until ``window`` have resolved. Uses only what is known at t0."""
    order = np.argsort(t1, kind="stable")
    cs = np.r_[0.0, np.cumsum(y[order])]
    k = np.searchsorted(t1[order], t0, side="left")  # events with t1 < t0
    out = np.full(len(y), np.nan)
    ok = k >= window
    out[ok] = (cs[k[ok]] - cs[k[ok] - window]) / window
    return out


def train_binary(
    X: ArrayLike, y: ArrayLike, t0: ArrayLike, t1: ArrayLike, cfg: BinaryTrainConfig,
    feature_names: list[str] | None = None, label_features: LabelFeatures | None = None,
) -> BinaryTrainResult:  # fmt: skip
    """Train, calibrate, score and canary-check one binary model (see the module docstring).

    ``X``: features at each event's start (rows in time order); ``y``: 0/1 labels; ``t0``,
    ``t1``: the bars where each event starts and its label ends. ``label_features(y, t0, t1)``
    optionally adds columns computed from the labels themselves (such as
    :func:`recent_hit_rate`); the canary recomputes them from its control labels, which is how
    a label leak in such a step shows.
    """
    X_arr = np.asarray(X, dtype=np.float64)
    y_arr = np.asarray(y)
    t0_arr = np.asarray(t0, dtype=np.int64)
    t1_arr = np.asarray(t1, dtype=np.int64)
    n = len(y_arr)
    if X_arr.ndim != 2 or X_arr.shape[0] != n or t0_arr.shape != (n,) or t1_arr.shape != (n,):
        raise ValueError(
            f"X must be n x features and y, t0, t1 of length n: got X {X_arr.shape}, "
            f"y {y_arr.shape}, t0 {t0_arr.shape}, t1 {t1_arr.shape}"
        )
    if not np.isin(y_arr, (0, 1)).all():
        raise ValueError("y must hold 0/1 labels only (drop unlabelled events first)")
    if np.any(np.diff(t0_arr) < 0) or np.any(t1_arr < t0_arr):
        raise ValueError("events must be in time order (t0 non-decreasing) with t1 >= t0")
    y_arr = y_arr.astype(np.int64)
    base = X_arr

    def features(labels: np.ndarray) -> np.ndarray:
        if label_features is None:
            return base
        return np.column_stack([base, label_features(labels, t0_arr, t1_arr)])

    X_arr = features(y_arr)

    cal_start, test_start = split_points(n, cfg)
    dev = _purged_before(t0_arr, t1_arr, np.arange(test_start), int(t0_arr[test_start]))
    train = _purged_before(t0_arr, t1_arr, np.arange(cal_start), int(t0_arr[cal_start]))
    cal = dev[dev >= cal_start]
    test = np.arange(test_start, n)

    n_cal_pos = int(y_arr[cal].sum())
    if min(n_cal_pos, len(cal) - n_cal_pos) < 5:
        raise ValueError(
            f"the calibration part ({len(cal)} events, {n_cal_pos} positive) needs at least 5 of "
            "each class to fit an isotonic calibration"
        )
    folds, oof, _ = _cross_validate(X_arr, y_arr, t0_arr, t1_arr, dev, cfg)
    model = _fit(X_arr, y_arr, t0_arr, t1_arr, train, cfg)
    calibrator = fit_isotonic(model, X_arr[cal], y_arr[cal])
    score = calibrator.score(model, X_arr[test])
    raw = np.asarray(model.predict_proba(X_arr[test]))[:, 1]
    calibrated = calibrator.predict(score)
    metrics: dict[str, Any] = {
        "events": {"train": len(train), "calibration": len(cal), "test": len(test)},
        "cv_folds": folds,
        "cv_out_of_fold": binary_metrics(y_arr[dev], oof),
        "cv_fold_auc_mean": _mean_auc(folds),
        "oos_raw": binary_metrics(y_arr[test], raw),
        "oos_calibrated": binary_metrics(y_arr[test], calibrated),
        "best_iteration": best_iteration(model),
        "library": cfg.library,
        "feature_importance": _importance(model, _names(feature_names, X_arr.shape[1])),
    }
    if cfg.canary_repeats > 0:
        metrics["canary"] = _canary(features, y_arr, t0_arr, t1_arr, dev, cfg)
    else:  # benchmarks only: the policy file requires at least one repeat
        metrics["canary"] = {"skipped": True, "passed": True, "auc_mean": None, "aucs": []}
    reasons = [
        f"{part}: missing {names}"
        for part in ("cv_out_of_fold", "oos_raw", "oos_calibrated")
        if (names := missing_metrics(metrics[part]))
    ]
    if not metrics["canary"]["passed"]:
        reasons.append(
            f"leakage canary: control AUC {metrics['canary']['auc_mean']:.3f} outside "
            f"0.5 +- {cfg.canary_tolerance}"
        )
    verdict = binary_verdict(model, calibrated, y_arr[dev], metrics)
    metrics["warnings"] = verdict.warnings
    return BinaryTrainResult(model, calibrator, metrics, verdict.blocks + reasons, verdict.warnings)


def _names(given: list[str] | None, n: int) -> list[str]:
    names = list(given or [])
    return names + [f"f{i}" for i in range(len(names), n)]


def _canary(
    features: Callable[[np.ndarray], np.ndarray], y: np.ndarray, t0: np.ndarray,
    t1: np.ndarray, dev: np.ndarray, cfg: BinaryTrainConfig,
) -> dict[str, Any]:  # fmt: skip
    def score(y_ctl: np.ndarray, block: np.ndarray) -> float | None:
        _, oof, fold_of = _cross_validate(features(y_ctl), y_ctl, t0, t1, dev, cfg)
        # Compared only within (fold, block) strata: the shuffle keeps each block's label rate,
        # and each fold's model has its own offset, so rankings across strata carry structure
        # that is not a leak. Within a stratum the shuffled labels are exchangeable: 0.5.
        return stratified_auc(y_ctl[dev], oof, fold_of * (block.max() + 1) + block)

    return run_canary(
        y, t0, dev, cfg.canary_block_bars, cfg.canary_repeats, cfg.canary_tolerance, cfg.seed,
        score, "ROC AUC within (CV fold, block) strata, one per shuffle",
    )  # fmt: skip


def _mean_auc(folds: list[dict[str, Any]]) -> float | None:
    aucs = [f["auc"] for f in folds if f["auc"] is not None]
    return float(np.mean(aucs)) if aucs else None


def _importance(model: Any, names: list[str]) -> dict[str, float]:
    if isinstance(model, xgb.XGBModel):
        scores = model.get_booster().get_score(importance_type="total_gain")
        gain = np.array([scores.get(f"f{i}", 0.0) for i in range(len(names))])
    else:
        gain = model.booster_.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    return {name: float(g) / total for name, g in zip(names, gain, strict=True)}
