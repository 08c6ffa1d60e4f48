"""Train a bounded regressor on time-ordered events (AI3: position scale in [0, 1]).

The same purged parts and CV as the binary models. The calibration part is not needed and is
left out, as it is for the binary models' fit: the backtest searches θ on it, so no fitted part
of a model version may see it. LightGBM regression with early stopping on the purged tail of
each training window, predictions clipped to [0, 1]. Metrics: RMSE, MAE, R^2 and Spearman rank
correlation per fold, out-of-fold and on the out-of-sample test part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from mlcore.training._binary import (
    BinaryTrainConfig,
    early_stopping_split,
    fit_early_stopped,
    split_points,
)
from mlcore.training._verdict import regressor_verdict
from mlcore.validation import PurgedGroupedKFold

REGRESSION_METRICS = ("rmse", "mae", "r2", "spearman")


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """RMSE, MAE, R^2 and Spearman's rho of predictions (None where undefined)."""
    rho = spearmanr(y, pred).statistic if np.ptp(pred) > 0 and np.ptp(y) > 0 else math.nan
    r2 = r2_score(y, pred) if len(y) > 1 and np.ptp(y) > 0 else math.nan
    out = {
        "n": len(y),
        "mean_target": float(np.mean(y)),
        "rmse": float(math.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2),
        "spearman": float(rho),
    }
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()
    }


@dataclass
class RegressorResult:
    """The fitted regressor and its metrics."""

    model: lgb.LGBMRegressor
    metrics: dict[str, Any]
    blocked_reasons: list[str] = field(default_factory=list)


def _params(cfg: BinaryTrainConfig) -> dict[str, Any]:
    params = cfg.lgbm_params()
    params.pop("class_weight")
    params["objective"] = "regression"
    return params


def _fit(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, idx: np.ndarray,
    cfg: BinaryTrainConfig,
) -> lgb.LGBMRegressor:  # fmt: skip
    model = lgb.LGBMRegressor(**_params(cfg))
    parts = early_stopping_split(t0, t1, idx, cfg)
    fitted: lgb.LGBMRegressor = fit_early_stopped(model, X, y, parts, cfg, "l2")
    return fitted


def _predict(model: lgb.LGBMRegressor, X: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(model.predict(X), dtype=np.float64), 0.0, 1.0)


def cross_validate_regressor(
    X: np.ndarray, y: np.ndarray, t0: np.ndarray, t1: np.ndarray, dev: np.ndarray,
    cfg: BinaryTrainConfig,
) -> tuple[list[dict[str, Any]], np.ndarray]:  # fmt: skip
    """Per-fold metrics and out-of-fold predictions over ``dev``."""
    cv = PurgedGroupedKFold(cfg.n_folds, 1, cfg.purge_bars, cfg.embargo_bars, cfg.min_block_bars)
    oof = np.full(len(dev), np.nan)
    folds = []
    for k, (tr, te) in enumerate(cv.split(X[dev], groups=t0[dev], label_end=t1[dev])):
        model = _fit(X, y, t0, t1, dev[tr], cfg)
        oof[te] = _predict(model, X[dev[te]])
        folds.append(
            {"fold": k, "best_iteration": model.best_iteration_}
            | regression_metrics(y[dev[te]], oof[te])
        )
    return folds, oof


def train_regressor(
    X: ArrayLike, y: ArrayLike, t0: ArrayLike, t1: ArrayLike, cfg: BinaryTrainConfig
) -> RegressorResult:
    """Train, score and check a [0, 1] regressor (see the module docstring)."""
    X_arr = np.asarray(X, dtype=np.float64)
    y_arr = np.asarray(y, dtype=np.float64)
    t0_arr = np.asarray(t0, dtype=np.int64)
    t1_arr = np.asarray(t1, dtype=np.int64)
    n = len(y_arr)
    if X_arr.ndim != 2 or X_arr.shape[0] != n or t0_arr.shape != (n,) or t1_arr.shape != (n,):
        raise ValueError(f"X must be n x features and y, t0, t1 of length n; got X {X_arr.shape}")
    if not (np.isfinite(y_arr).all() and (y_arr >= 0).all() and (y_arr <= 1).all()):
        raise ValueError("targets must be finite and within [0, 1]")
    if np.any(np.diff(t0_arr) < 0) or np.any(t1_arr < t0_arr):
        raise ValueError("events must be in time order (t0 non-decreasing) with t1 >= t0")
    cal_start, test_start = split_points(n, cfg)
    dev = np.arange(cal_start)
    dev = dev[t1_arr[dev] < t0_arr[cal_start]]
    test = np.arange(test_start, n)
    folds, oof = cross_validate_regressor(X_arr, y_arr, t0_arr, t1_arr, dev, cfg)
    model = _fit(X_arr, y_arr, t0_arr, t1_arr, dev, cfg)
    test_pred = _predict(model, X_arr[test])
    metrics: dict[str, Any] = {
        "events": {
            "train": len(dev),
            "held_out_for_theta_search": test_start - cal_start,
            "test": len(test),
        },
        "cv_folds": folds,
        "cv_out_of_fold": regression_metrics(y_arr[dev], oof),
        "oos": regression_metrics(y_arr[test], test_pred),
        "oos_mean_baseline_rmse": float(
            math.sqrt(mean_squared_error(y_arr[test], np.full(len(test), y_arr[dev].mean())))
        ),
        "best_iteration": model.best_iteration_,
    }
    reasons = [
        f"{part}: missing {names}"
        for part in ("cv_out_of_fold", "oos")
        if (names := [m for m in REGRESSION_METRICS if metrics[part][m] is None])
    ]
    return RegressorResult(model, metrics, regressor_verdict(model, test_pred).blocks + reasons)
