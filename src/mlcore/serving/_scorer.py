"""AI1, AI2 and AI3 of a model version for one bar at a time, off the scikit-learn wrappers.

Each model's inputs are picked from the bar's feature vector by index, robust-scaled with the
stored medians and scales, walked through the compiled trees of the native booster
(:class:`mlcore.execution.CompiledTrees`, equal to the booster bit for bit) and calibrated with the
stored isotonic map — the arithmetic of :meth:`mlcore.execution.PairModels.score`, value for
value, in one compiled call per model.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from mlcore.execution import CompiledTrees, PairModels, is_lightgbm, link, walk
from mlcore.features import PAIR_FEATURES

# The vector a bar is scored from: the pair features, then the two AI1 event features.
INPUT_NAMES = (*PAIR_FEATURES, "event_direction", "event_abs_z0")
_INDEX = {name: i for i, name in enumerate(INPUT_NAMES)}

# What is done to the trees' raw score before calibration.
POST_RAW = 0  # the calibrator reads the raw score / margin (decision_function)
POST_LINK = 1  # the calibrator reads the booster's own output transform (XGBoost predict_proba)


@nb.njit(cache=True, nogil=True)
def _score(
    vector: np.ndarray, columns: np.ndarray, scaled: np.ndarray, median: np.ndarray,
    scale: np.ndarray, clip: float, row: np.ndarray, feature: np.ndarray,
    threshold: np.ndarray, left: np.ndarray, value: np.ndarray, flags: np.ndarray,
    roots: np.ndarray, base: float, post: int, link_kind: int, link_scale: float,
    cal_x: np.ndarray, cal_y: np.ndarray,
) -> float:  # fmt: skip
    """One model's calibrated output for one bar; NaN when an input is not finite."""
    for i in range(columns.shape[0]):
        v = vector[columns[i]]
        if not np.isfinite(v):
            return np.nan
        row[i] = v
    for j in range(scaled.shape[0]):
        k = scaled[j]
        # (x - median) / scale, then np.clip: the same two roundings as ModelInputs.transform.
        z = (row[k] - median[j]) / scale[j]
        row[k] = min(max(z, -clip), clip)
    raw = walk(row, feature, threshold, left, value, flags, roots, base)
    if post == POST_LINK:
        raw = link(raw, link_kind, link_scale)
    if cal_x.shape[0] == 0:
        return raw
    out: float = np.interp(raw, cal_x, cal_y)
    return out


class _FastModel:
    """One model, its arrays unpacked once: a bar's call is a single compiled function."""

    __slots__ = ("args", "cal_x", "cal_y", "clip", "columns", "median", "post", "row",
                 "scale", "scaled", "sigmoid", "trees")  # fmt: skip

    def __init__(
        self, columns: np.ndarray, scaled: np.ndarray, median: np.ndarray, scale: np.ndarray,
        clip: float, trees: CompiledTrees, post: int, sigmoid: bool, cal_x: np.ndarray,
        cal_y: np.ndarray,
    ) -> None:  # fmt: skip
        self.columns, self.scaled, self.median, self.scale = columns, scaled, median, scale
        self.clip, self.trees, self.post, self.sigmoid = clip, trees, post, sigmoid
        self.cal_x, self.cal_y = cal_x, cal_y
        self.row = np.empty(len(columns))  # scratch: the model's input row (one thread)
        t = trees
        # LightGBM scored through predict_proba gets NumPy's logistic afterwards (below).
        raw_only = sigmoid
        empty = np.empty(0)
        self.args = (
            columns, scaled, median, scale, clip, self.row, t.feature, t.threshold, t.left,
            t.value, t.flags, t.roots, t.base, POST_RAW if raw_only else post, t.link_kind,
            t.link_scale, empty if raw_only else cal_x, empty if raw_only else cal_y,
        )  # fmt: skip

    def score(self, vector: np.ndarray) -> float:
        out = float(_score(vector, *self.args))
        if self.sigmoid and not math.isnan(out):
            # The batch path applies NumPy's exp here; the same function keeps values equal.
            p = 1.0 / (1.0 + np.exp(-np.array([out])))
            out = float(np.interp(p, self.cal_x, self.cal_y)[0])
        return out


def _compile(models: PairModels, name: str) -> _FastModel:
    clf = getattr(models, name)
    inputs = clf.inputs
    unknown = [c for c in inputs.columns if c not in _INDEX]
    if unknown:
        raise ValueError(f"model version {models.version}: {name} reads unknown inputs {unknown}")
    booster = clf.booster
    is_lgb = is_lightgbm(booster)
    trees = CompiledTrees.from_lightgbm(booster) if is_lgb else CompiledTrees.from_xgboost(booster)
    cal = clf.calibrator
    proba = cal.response == "predict_proba"
    return _FastModel(
        columns=np.array([_INDEX[c] for c in inputs.columns], dtype=np.int64),
        scaled=np.array([inputs.columns.index(c) for c in inputs.scaler.features], dtype=np.int64),
        median=np.asarray(inputs.scaler.median_, dtype=np.float64),
        scale=np.asarray(inputs.scaler.scale_, dtype=np.float64),
        clip=float(inputs.scaler.clip), trees=trees,
        post=POST_LINK if proba and not is_lgb else POST_RAW, sigmoid=proba and is_lgb,
        cal_x=np.ascontiguousarray(cal.x_, dtype=np.float64),
        cal_y=np.ascontiguousarray(cal.y_, dtype=np.float64),
    )  # fmt: skip


class PairScorer:
    """The three pair models of one version, scoring one bar's input vector."""

    def __init__(self, models: PairModels) -> None:
        self.version = models.version
        self.ai1 = _compile(models, "ai1")
        self.ai2 = _compile(models, "ai2")
        # AI3 reads AI1's model row (same columns, same scaling); its raw output is the scale.
        a = self.ai1
        empty = np.empty(0)
        self.ai3 = _FastModel(
            a.columns, a.scaled, a.median, a.scale, a.clip, CompiledTrees.from_lightgbm(models.ai3),
            POST_RAW, False, empty, empty,
        )  # fmt: skip

    def score(self, vector: np.ndarray, ask_ai1: bool) -> tuple[float, float, float]:
        """(return_prob, risk_score, position_scale); NaN where a model's inputs are not all
        finite, and return_prob NaN unless ``ask_ai1``."""
        prob = self.ai1.score(vector) if ask_ai1 else math.nan
        scale = self.ai3.score(vector)
        if not math.isnan(scale):
            scale = min(max(scale, 0.0), 1.0)
        return prob, self.ai2.score(vector), scale
