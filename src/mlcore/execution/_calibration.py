"""An isotonic calibration map replayed without scikit-learn (it is fitted by
:func:`mlcore.training.fit_isotonic`).

scikit-learn calibrates the model's ``decision_function`` when it has one (LightGBM: the raw
score, in log-odds) and its probability otherwise (XGBoost); the calibrator records which, and
that is its input. The fitted map is a step function given by its thresholds; it is stored as
JSON (no pickle) and applied with ``numpy.interp``, which is what scikit-learn's
``IsotonicRegression(out_of_bounds="clip").predict`` computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike


class IsotonicCalibrator:
    """Monotone map from a model's decision score (raw log-odds) to a calibrated probability."""

    def __init__(
        self, x_thresholds: ArrayLike, y_thresholds: ArrayLike, response: str = "decision_function"
    ) -> None:
        if response not in ("decision_function", "predict_proba"):
            raise ValueError(f"unknown calibrator input {response!r}")
        self.response = response
        self.x_ = np.asarray(x_thresholds, dtype=np.float64)
        self.y_ = np.asarray(y_thresholds, dtype=np.float64)
        if self.x_.ndim != 1 or self.x_.shape != self.y_.shape or len(self.x_) == 0:
            raise ValueError("calibrator thresholds must be two 1-D arrays of the same length")
        if np.any(np.diff(self.x_) < 0) or np.any(np.diff(self.y_) < 0):
            raise ValueError("calibrator thresholds must be non-decreasing")

    def score(self, model: Any, X: ArrayLike) -> np.ndarray:
        """The calibrator's input for ``X``: the model output it was fitted on."""
        if self.response == "decision_function":
            return np.asarray(model.decision_function(X), dtype=np.float64)
        return np.asarray(model.predict_proba(X), dtype=np.float64)[:, 1]

    def predict(self, score: ArrayLike) -> np.ndarray:
        """Calibrated probabilities for decision scores (clipped to the fitted range)."""
        return np.interp(np.asarray(score, dtype=np.float64), self.x_, self.y_)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready thresholds."""
        return {
            "input": self.response,
            "x_thresholds": self.x_.tolist(),
            "y_thresholds": self.y_.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsotonicCalibrator:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(
                data["x_thresholds"], data["y_thresholds"], data.get("input", "decision_function")
            )
        except KeyError as exc:
            raise ValueError(f"calibrator data lacks {exc.args[0]!r}") from None
