"""Validation stage: time-series splitters that keep label overlap out of training
(scikit-learn compatible: ``split(X, y, groups)`` yields index arrays)."""

from mlcore.validation._purged import PurgedGroupedKFold
from mlcore.validation._walk_forward import MonthlyWalkForward

__all__ = ["MonthlyWalkForward", "PurgedGroupedKFold"]
