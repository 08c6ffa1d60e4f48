"""Validation stage: time-series splitters that keep label overlap out of training
(scikit-learn compatible: ``split(X, y, groups)`` yields index arrays) and the metrics every
model is scored with."""

from mlcore.validation._metrics import (
    METRIC_NAMES,
    binary_metrics,
    expected_calibration_error,
    missing_metrics,
    multiclass_metrics,
)
from mlcore.validation._purged import PurgedGroupedKFold
from mlcore.validation._walk_forward import MonthlyWalkForward

__all__ = [
    "METRIC_NAMES",
    "MonthlyWalkForward",
    "PurgedGroupedKFold",
    "binary_metrics",
    "expected_calibration_error",
    "missing_metrics",
    "multiclass_metrics",
]
