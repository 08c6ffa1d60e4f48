"""A scikit-learn random forest stored without pickle: its trees' own arrays as JSON, and a
compiled tree walk that predicts exactly what ``RandomForestClassifier.predict_proba`` does.

scikit-learn has no native model format besides pickle, which must never be loaded on a
production path. A fitted forest is fully described by each tree's ``children_left``,
``children_right``, ``feature``, ``threshold`` and leaf ``value`` (class fractions), so those
are what is stored. The walk compares the input cast to float32 with the float64 thresholds
(as scikit-learn does) and sums the trees in order before dividing by their number, so the
probabilities are bit-identical to scikit-learn's with one job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

FORMAT = "mlcore.random_forest"
FORMAT_VERSION = 1
_LEAF = -1


def forest_to_json(model: Any) -> bytes:
    """A fitted ``RandomForestClassifier`` (one output) as deterministic JSON bytes."""
    if getattr(model, "n_outputs_", 1) != 1:
        raise ValueError("only single-output forests can be stored")
    trees = []
    for est in model.estimators_:
        t = est.tree_
        leaf = t.children_left == _LEAF
        trees.append(
            {
                "left": t.children_left.tolist(),
                "right": t.children_right.tolist(),
                "feature": np.where(leaf, -1, t.feature).tolist(),
                "threshold": np.where(leaf, 0.0, t.threshold).tolist(),
                # Only leaves are ever read; inner nodes store zeros to keep the file small.
                "value": np.where(leaf[:, None], t.value[:, 0, :], 0.0).tolist(),
            }
        )
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "classes": [int(c) for c in model.classes_],
        "n_features": int(model.n_features_in_),
        "trees": trees,
    }
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)).encode()


@nb.njit(cache=True, nogil=True)
def _walk(
    left: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
    value: np.ndarray, roots: np.ndarray, X: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    n_trees = len(roots)
    for i in range(X.shape[0]):
        for k in range(n_trees):
            node = roots[k]
            while left[node] != _LEAF:
                # scikit-learn casts the input to float32 and compares with float64 thresholds.
                if np.float64(np.float32(X[i, feature[node]])) <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            for c in range(out.shape[1]):
                out[i, c] += value[node, c]
        for c in range(out.shape[1]):
            out[i, c] /= n_trees


@dataclass(frozen=True)
class ForestModel:
    """A random forest read from :func:`forest_to_json`; the trees flattened into one array
    each, child indices made absolute."""

    classes: tuple[int, ...]
    n_features: int
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    roots: np.ndarray

    @classmethod
    def from_json(cls, data: bytes, where: str = "random forest") -> ForestModel:
        """Parse and check a stored forest; ``ValueError`` naming ``where`` and the fault."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"{where}: not a {FORMAT} document")
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"{where}: version {doc.get('version')!r}, expected {FORMAT_VERSION}")
        try:
            classes = tuple(int(c) for c in doc["classes"])
            n_features = int(doc["n_features"])
            trees = doc["trees"]
            parts: dict[str, list[np.ndarray]] = {k: [] for k in ("l", "r", "f", "t", "v")}
            roots, offset = [], 0
            for t in trees:
                n = len(t["left"])
                left = np.asarray(t["left"], dtype=np.int64)
                right = np.asarray(t["right"], dtype=np.int64)
                inner = left != _LEAF
                parts["l"].append(np.where(inner, left + offset, _LEAF))
                parts["r"].append(np.where(inner, right + offset, _LEAF))
                parts["f"].append(np.asarray(t["feature"], dtype=np.int64))
                parts["t"].append(np.asarray(t["threshold"], dtype=np.float64))
                parts["v"].append(np.asarray(t["value"], dtype=np.float64).reshape(n, len(classes)))
                if not all(len(p[-1]) == n for p in parts.values()):
                    raise ValueError("tree arrays of unequal length")
                roots.append(offset)
                offset += n
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: malformed tree data ({exc})") from None
        if not roots:
            raise ValueError(f"{where}: holds no trees")
        left, right, feature, threshold, value = (
            np.concatenate(parts[k]) for k in ("l", "r", "f", "t", "v")
        )
        model = cls(
            classes, n_features, left, right, feature, threshold, value,
            np.asarray(roots, dtype=np.int64),
        )  # fmt: skip
        model._check(where)
        return model

    def _check(self, where: str) -> None:
        inner = self.left != _LEAF
        n = len(self.left)
        ok = (
            np.all((self.left[inner] > np.flatnonzero(inner)) & (self.left[inner] < n))
            and np.all((self.right[inner] > np.flatnonzero(inner)) & (self.right[inner] < n))
            and np.all((self.feature[inner] >= 0) & (self.feature[inner] < self.n_features))
            and np.all(self.right[~inner] == _LEAF)
        )
        if not ok:
            raise ValueError(f"{where}: tree links or feature indices out of range")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, rows of ``X`` (n x n_features, finite) in, n x classes out."""
        arr = np.ascontiguousarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ValueError(f"expected n x {self.n_features} features, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("features must be finite (the forest was fitted without NaN)")
        out = np.zeros((arr.shape[0], len(self.classes)), dtype=np.float64)
        _walk(self.left, self.right, self.feature, self.threshold, self.value, self.roots, arr, out)
        return out
