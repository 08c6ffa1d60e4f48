"""Model inputs: the ordered columns a model sees, robust-scaled where that is defined.

Continuous features are scaled with median/MAD fitted on the training window only and clipped
(``RobustScaler``); columns whose MAD is zero over that window (event flags, capped values) and
categorical columns pass through unchanged. ``feature_schema.json`` stores the order, the dtypes,
which columns are scaled and the scalers, so inference uses exactly the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlcore.features import RobustScaler


class ModelInputs:
    """Ordered model columns with a robust scaler over the scalable ones."""

    def __init__(self, columns: Sequence[str], scaler: RobustScaler) -> None:
        self.columns = tuple(columns)
        self.scaler = scaler
        unknown = [c for c in scaler.features if c not in self.columns]
        if unknown:
            raise ValueError(f"scaled columns {unknown} are not model columns")
        self.passthrough = tuple(c for c in self.columns if c not in scaler.features)

    @classmethod
    def fit(
        cls, train: pd.DataFrame, columns: Sequence[str], scalable: Sequence[str], clip: float
    ) -> ModelInputs:
        """Fit on the training window: scale the ``scalable`` columns whose MAD is non-zero."""
        values = train[list(scalable)].to_numpy(dtype=np.float64)
        mad = np.nanmedian(np.abs(values - np.nanmedian(values, axis=0)), axis=0)
        scaled = [c for c, d in zip(scalable, mad, strict=True) if d > 0]
        scaler = RobustScaler(scaled, clip).fit(train[scaled].to_numpy(dtype=np.float64))
        return cls(columns, scaler)

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """The model matrix in column order, and how many values were clipped per column."""
        out = frame[list(self.columns)].to_numpy(dtype=np.float64).copy()
        idx = [self.columns.index(c) for c in self.scaler.features]
        scaled, clipped = self.scaler.transform(out[:, idx])
        out[:, idx] = scaled
        return out, {c: int(n) for c, n in zip(self.scaler.features, clipped, strict=True)}

    def to_schema(self) -> dict[str, Any]:
        """``feature_schema.json``: ordered columns with dtypes, the scaled ones, the scalers."""
        schema = self.scaler.to_schema()
        schema["model_columns"] = [
            {"name": c, "dtype": "float64", "scaled": c in self.scaler.features}
            for c in self.columns
        ]
        schema["passthrough"] = list(self.passthrough)
        return schema

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> ModelInputs:
        """Rebuild exactly from :meth:`to_schema` output."""
        try:
            columns = [c["name"] for c in schema["model_columns"]]
        except (KeyError, TypeError):
            raise ValueError("feature schema has no model_columns list") from None
        return cls(columns, RobustScaler.from_schema(schema))
