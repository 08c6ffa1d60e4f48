"""Classification metrics for a run's ``metrics.json``: every model, fold and out-of-sample set
is scored the same way, and a run with a missing or undefined metric is blocked.

ECE uses equal-width probability bins (``n_bins`` of them over [0, 1]); its bins are those of
``sklearn.calibration.calibration_curve(strategy="uniform")``, so the curve reported next to it is
the one it sums over.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)

METRIC_NAMES = ("auc", "pr_auc", "logloss", "brier", "ece", "f1")


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Sum over equal-width bins of (share of samples) * |mean predicted - observed rate|."""
    y_arr, p_arr = _check(y, p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Same binning as sklearn's calibration_curve (searchsorted on the inner edges, left side):
    # a probability on an edge belongs to the bin below it.
    idx = np.searchsorted(edges[1:-1], p_arr)
    total = 0.0
    for b in range(n_bins):
        in_bin = idx == b
        if in_bin.any():
            total += in_bin.mean() * abs(p_arr[in_bin].mean() - y_arr[in_bin].mean())
    return float(total)


def binary_metrics(
    y: ArrayLike, p: ArrayLike, threshold: float = 0.5, n_bins: int = 10
) -> dict[str, Any]:
    """AUC, PR-AUC (average precision), log loss, Brier, ECE, F1 at ``threshold``, and the
    calibration curve; undefined metrics (one class only) are None."""
    y_arr, p_arr = _check(y, p)
    two_classes = len(np.unique(y_arr)) == 2
    out: dict[str, Any] = {
        "n": len(y_arr),
        "positive_rate": float(y_arr.mean()),
        "auc": float(roc_auc_score(y_arr, p_arr)) if two_classes else None,
        "pr_auc": float(average_precision_score(y_arr, p_arr)) if two_classes else None,
        "logloss": float(log_loss(y_arr, p_arr, labels=[0, 1])),
        "brier": float(brier_score_loss(y_arr, p_arr)),
        "ece": expected_calibration_error(y_arr, p_arr, n_bins),
        "f1": float(f1_score(y_arr, p_arr >= threshold, zero_division=0.0))
        if two_classes
        else None,
        "threshold": threshold,
    }
    prob_true, prob_pred = calibration_curve(y_arr, p_arr, n_bins=n_bins, strategy="uniform")
    # The samples in each bin the curve has (it leaves out empty bins), binned as it bins.
    counts = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p_arr),
                         minlength=n_bins)  # fmt: skip
    out["calibration_curve"] = {
        "bins": "equal-width",
        "n_bins": n_bins,
        "prob_pred": [float(v) for v in prob_pred],
        "prob_true": [float(v) for v in prob_true],
        "count": [int(c) for c in counts[counts > 0]],
    }
    return out


def multiclass_metrics(
    y: ArrayLike, proba: ArrayLike, prior: ArrayLike | None = None, n_bins: int = 10
) -> dict[str, Any]:
    """The same metrics for a K-class model (labels 0..K-1, ``proba`` n x K): one-vs-rest
    macro AUC and PR-AUC, log loss, multi-class Brier (sklearn's), top-label ECE (equal-width
    bins), macro F1 of the argmax, accuracy, balanced accuracy, and a one-vs-rest calibration
    curve per class. ``prior`` (class shares of the training data) adds the log loss of always
    predicting it, the no-skill baseline. Metrics needing every class present are None
    otherwise."""
    y_arr = np.asarray(y)
    p_arr = np.asarray(proba, dtype=np.float64)
    if p_arr.ndim != 2 or y_arr.shape != (p_arr.shape[0],) or len(y_arr) == 0:
        raise ValueError(
            f"labels must be 1-D and probabilities n x K with the same n > 0, got shapes "
            f"{y_arr.shape} and {p_arr.shape}"
        )
    k = p_arr.shape[1]
    labels = list(range(k))
    if not np.isin(y_arr, labels).all():
        got = np.unique(y_arr)[:5].tolist()
        raise ValueError(f"labels must be in 0..{k - 1}, got values {got}")
    if not np.isfinite(p_arr).all() or (p_arr < 0).any() or (p_arr > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1]")
    y_arr = y_arr.astype(np.int64)
    every = len(np.unique(y_arr)) == k
    onehot = np.eye(k, dtype=np.int64)[y_arr]
    pred = np.argmax(p_arr, axis=1)
    top = p_arr[np.arange(len(y_arr)), pred]
    out: dict[str, Any] = {
        "n": len(y_arr),
        "class_shares": [float(v) for v in onehot.mean(axis=0)],
        "auc": float(roc_auc_score(y_arr, p_arr, multi_class="ovr", average="macro", labels=labels))
        if every
        else None,
        "pr_auc": float(
            np.mean([average_precision_score(onehot[:, c], p_arr[:, c]) for c in labels])
        )
        if every
        else None,
        "logloss": float(log_loss(y_arr, p_arr, labels=labels)),
        "brier": float(brier_score_loss(y_arr, p_arr, labels=labels)),
        "ece": expected_calibration_error((pred == y_arr).astype(np.int64), top, n_bins),
        "ece_kind": "top-label",
        "f1": float(f1_score(y_arr, pred, labels=labels, average="macro", zero_division=0.0)),
        "accuracy": float((pred == y_arr).mean()),
        "balanced_accuracy": float(
            np.mean([(pred[y_arr == c] == c).mean() for c in labels if (y_arr == c).any()])
        ),
    }
    if prior is not None:
        base = np.tile(np.asarray(prior, dtype=np.float64), (len(y_arr), 1))
        out["prior_logloss"] = float(log_loss(y_arr, base, labels=labels))
    curves = {}
    for c in labels:
        prob_true, prob_pred = calibration_curve(
            onehot[:, c], p_arr[:, c], n_bins=n_bins, strategy="uniform"
        )
        curves[str(c)] = {
            "prob_pred": [float(v) for v in prob_pred],
            "prob_true": [float(v) for v in prob_true],
        }
    out["calibration_curve"] = {"bins": "equal-width", "n_bins": n_bins, "one_vs_rest": curves}
    return out


def missing_metrics(metrics: dict[str, Any]) -> list[str]:
    """Names of required metrics that are absent, None or not finite (a blocked run)."""
    missing = []
    for name in METRIC_NAMES:
        value = metrics.get(name)
        if value is None or not isinstance(value, int | float) or not math.isfinite(value):
            missing.append(name)
    return missing


def _check(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.ndim != 1 or y_arr.shape != p_arr.shape or len(y_arr) == 0:
        raise ValueError(
            f"labels and probabilities must be two 1-D arrays of the same non-zero length, got "
            f"shapes {y_arr.shape} and {p_arr.shape}"
        )
    if not np.isin(y_arr, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, got values {np.unique(y_arr)[:5].tolist()}")
    if not np.isfinite(p_arr).all() or (p_arr < 0).any() or (p_arr > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1]")
    return y_arr.astype(np.int64), p_arr
