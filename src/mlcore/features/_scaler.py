"""Robust scaling fitted on the training window, stored in ``feature_schema.json``.

scaled = clip((x - median) / (1.4826 * MAD), -clip, clip): 1.4826 * MAD estimates the standard
deviation of normal data without being moved by outliers. Inference must use exactly the stored
values, so the schema (ordered features, dtypes, scalers) is what a model version carries, and
``feature_hash = sha256(feature_schema.json + preprocessing config)`` keys the feature cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_MAD_TO_SIGMA = 1.4826
SCHEMA_VERSION = 1


class RobustScaler:
    """Median/MAD scaler with clipping; scikit-learn style (``fit`` returns self)."""

    def __init__(self, features: Sequence[str], clip: float) -> None:
        if clip <= 0:
            raise ValueError(f"clip must be positive, got {clip!r}")
        if len(set(features)) != len(features):
            raise ValueError(f"feature names must be unique, got {list(features)}")
        self.features = tuple(features)
        self.clip = float(clip)

    def fit(self, x: np.ndarray) -> RobustScaler:
        """Fit on the training window (rows = bars; NaN rows of the warm-up are ignored)."""
        x = self._check(x, allow_nan=True)
        self.median_ = np.nanmedian(x, axis=0)
        self.mad_ = np.nanmedian(np.abs(x - self.median_), axis=0)
        self.scale_ = _MAD_TO_SIGMA * self.mad_
        bad = [f for f, s in zip(self.features, self.scale_, strict=True) if not s > 0]
        if bad:
            raise ValueError(
                f"feature(s) {bad} have zero or undefined MAD over the training window; "
                "drop them or widen the window"
            )
        return self

    def transform(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale and clip; return (scaled values, clipped count per feature)."""
        if not hasattr(self, "scale_"):
            raise ValueError("the scaler is not fitted: call fit() or load a schema")
        x = self._check(x, allow_nan=False)
        z = (x - self.median_) / self.scale_
        clipped = (np.abs(z) > self.clip).sum(axis=0)
        return np.clip(z, -self.clip, self.clip), clipped

    def _check(self, x: np.ndarray, *, allow_nan: bool) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self.features):
            raise ValueError(
                f"expected a 2-D array with {len(self.features)} columns "
                f"{list(self.features)}, got shape {arr.shape}"
            )
        if np.isinf(arr).any():
            col = int(np.flatnonzero(np.isinf(arr).any(axis=0))[0])
            raise ValueError(f"feature {self.features[col]!r} holds inf")
        if not allow_nan and np.isnan(arr).any():
            col = int(np.flatnonzero(np.isnan(arr).any(axis=0))[0])
            raise ValueError(
                f"feature {self.features[col]!r} holds NaN: "
                "drop or flag warm-up rows before scaling"
            )
        return arr

    def to_schema(self) -> dict[str, Any]:
        """The ``feature_schema.json`` content: ordered features, dtypes and scalers."""
        return {
            "schema_version": SCHEMA_VERSION,
            "features": [{"name": f, "dtype": "float64"} for f in self.features],
            "scalers": {
                f: {"median": float(m), "mad": float(d), "scale": float(s)}
                for f, m, d, s in zip(
                    self.features, self.median_, self.mad_, self.scale_, strict=True
                )
            },
            "clip": self.clip,
        }

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> RobustScaler:
        """Rebuild the fitted scaler from a stored schema, exactly."""
        if schema.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported feature schema version {schema.get('schema_version')!r}")
        names = [f["name"] for f in schema["features"]]
        missing = [n for n in names if n not in schema["scalers"]]
        if missing:
            raise ValueError(f"feature schema has no scaler for {missing}")
        scaler = cls(names, schema["clip"])
        sc = schema["scalers"]
        scaler.median_ = np.array([sc[n]["median"] for n in names])
        scaler.mad_ = np.array([sc[n]["mad"] for n in names])
        scaler.scale_ = np.array([sc[n]["scale"] for n in names])
        return scaler


def schema_bytes(schema: Mapping[str, Any]) -> bytes:
    """``feature_schema.json`` serialized deterministically."""
    return (json.dumps(schema, sort_keys=True, indent=2) + "\n").encode()


def feature_hash(schema: Mapping[str, Any], preprocessing: Mapping[str, Any]) -> str:
    """sha256(feature_schema.json + preprocessing config), the feature cache key."""
    prep = json.dumps(preprocessing, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(schema_bytes(schema) + prep).hexdigest()
