"""Isotonic calibration of a fitted binary model, fitted by scikit-learn on held-out data.

Fitting goes through ``CalibratedClassifierCV(FrozenEstimator(model), method="isotonic")`` (the
model is not refitted); the result is an :class:`mlcore.execution.IsotonicCalibrator`, the map
that research and live both replay without scikit-learn.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from mlcore.execution import IsotonicCalibrator


def fit_isotonic(model: Any, X: ArrayLike, y: ArrayLike) -> IsotonicCalibrator:
    """Fit an isotonic map on held-out ``X, y`` with scikit-learn. The input is what
    scikit-learn calibrates: ``decision_function`` when the model has one (LightGBM: raw
    log-odds), else the positive-class ``predict_proba`` (XGBoost)."""
    if not hasattr(model, "predict_proba"):
        raise ValueError(f"{type(model).__name__} is not a fitted probabilistic classifier")
    cal = CalibratedClassifierCV(FrozenEstimator(model), method="isotonic")
    cal.fit(X, y)
    iso = cal.calibrated_classifiers_[0].calibrators[0]
    response = "decision_function" if hasattr(model, "decision_function") else "predict_proba"
    return IsotonicCalibrator(iso.X_thresholds_, iso.y_thresholds_, response)
