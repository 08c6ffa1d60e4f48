"""LightGBM and XGBoost boosters flattened into arrays and walked by a compiled function, for
one-row predictions in a few microseconds that equal the native boosters' bit for bit.

Each library's own prediction rules are reproduced, not approximated:

* LightGBM (``Booster.predict``): the row is read as float64 and any ``|x| <= kZeroThreshold``
  (``1e-35f`` widened to double) becomes 0.0 before the walk, as its dense-row reader does. A
  numerical split goes left when ``x <= threshold`` in double; ``missing_type`` None turns NaN
  into 0.0, Zero sends 0.0 and NaN to the default side, NaN sends NaN there. Leaf values are
  summed in double in tree order, over the iterations ``predict`` uses by default (the best
  iteration when early stopping set one). ``binary`` maps the sum through
  ``1 / (1 + exp(-sigmoid * raw))``, ``cross_entropy`` through ``1 / (1 + exp(-raw))``.
* XGBoost (``Booster.inplace_predict``): the row is cast to float32; NaN takes the default
  child, otherwise ``float32(x) < split_condition`` goes left. The margin starts at the
  intercept (``base_score`` clamped to ``[1e-6, 1 - 1e-6]`` and mapped through
  ``-logf(1 / p - 1)`` for ``binary:logistic``) and adds each tree's float32 leaf in float32, in
  tree order, over all trees. ``binary:logistic`` applies XGBoost's float32 sigmoid
  ``1 / (expf(min(-m, 88.7)) + 1 + 1e-16)``.

Both are mapped, when the arrays are built, onto the single float64 rule :func:`walk` applies
(``x <= threshold`` goes left, a missing value goes where ``NAN_LEFT`` says): an XGBoost
condition ``c`` becomes the largest double ``t`` with ``float32(x) < c`` exactly when
``x <= t``; LightGBM's NaN-as-0.0 becomes ``NAN_LEFT = (0.0 <= threshold)``, and a threshold
inside the zeroed band is moved to the band's edge. The transcendental steps call the C
library's ``exp``/``expf``/``logf`` (LLVM lowers numba's ``math.exp``/``math.log`` to them), the
same functions the native libraries call.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import numba as nb
import numpy as np

if TYPE_CHECKING:
    import lightgbm as lgb
    import xgboost as xgb

__all__ = [
    "FLOAT32",
    "K_ZERO_THRESHOLD",
    "LINK_IDENTITY",
    "LINK_SIGMOID",
    "LINK_SIGMOID32",
    "NAN_LEFT",
    "ZERO_MISSING",
    "CompiledTrees",
    "link",
    "walk",
]

# Node flags, one int32 per node.
NAN_LEFT: Final = 1  # a NaN feature value goes to the left child
ZERO_MISSING: Final = 2  # a value with |x| <= K_ZERO_THRESHOLD goes where NaN goes
FLOAT32: Final = 4  # leaf: add its value to the score in float32 (XGBoost)

# LightGBM declares ``const double kZeroThreshold = 1e-35f``: the float literal, widened.
K_ZERO_THRESHOLD: Final = float(np.float32(1e-35))

LINK_IDENTITY: Final = 0
LINK_SIGMOID: Final = 1  # LightGBM, double: 1 / (1 + exp(-scale * raw))
LINK_SIGMOID32: Final = 2  # XGBoost common::Sigmoid, float32

_LEAF: Final = -1
_LGB_IDENTITY: Final = frozenset(
    {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}
)
_XGB_OBJECTIVES: Final = frozenset({"binary:logistic", "reg:squarederror"})
_XGB_EPS: Final = np.float32(1e-6)  # XGBoost's kRtEps, the intercept's bound away from 0 and 1


@nb.njit(cache=True, nogil=True, inline="always")
def _inner(node: int, left: np.ndarray) -> bool:
    # Unsigned indices spare numba's negative-index wrap-around on every load (~20 % here).
    return bool(left[np.uint64(node)] != _LEAF)


@nb.njit(cache=True, nogil=True, inline="always")
def _step(
    x: np.ndarray, node: int, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
    flags: np.ndarray,
) -> int:  # fmt: skip
    # Integer arithmetic instead of if/else: LLVM keeps it free of branches, whose
    # mispredictions would otherwise cost more than the rest of the walk.
    u = np.uint64(node)
    f = flags[u]
    v = x[np.uint64(feature[u])]
    below = np.int32(v <= threshold[u])  # False for NaN
    missing = np.int32(np.isnan(v)) | ((f >> 1) & np.int32(abs(v) <= K_ZERO_THRESHOLD))
    go_left = (below & ~missing) | (missing & f & NAN_LEFT)
    return int(left[u] + 1 - go_left)


@nb.njit(cache=True, nogil=True, inline="always")
def _add(acc: float, leaf: int, value: np.ndarray, flags: np.ndarray) -> float:
    u = np.uint64(leaf)
    if flags[u] & FLOAT32:
        # Both terms are float32 values; their double sum rounded once to float32 is the
        # float32 sum (double carries more than 2 * 24 + 2 bits).
        return float(np.float32(acc + value[u]))
    return float(acc + value[u])


@nb.njit(cache=True, nogil=True)
def walk(
    x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
    value: np.ndarray, flags: np.ndarray, roots: np.ndarray, base: float,
) -> float:  # fmt: skip
    """Raw score of one row: ``base`` plus, tree by tree in order, the leaf ``x`` reaches.

    A node sends ``x[feature]`` left when ``x[feature] <= threshold``, except that a missing
    value (NaN, or ``|x| <= K_ZERO_THRESHOLD`` under ``ZERO_MISSING``) goes left exactly when
    the node has ``NAN_LEFT``. The left child of a node is ``left``, its right child
    ``left + 1``; leaves have ``left == -1`` and their output in ``value``.

    Parameters
    ----------
    x : float64 array of the model's features.
    feature, threshold, left, value, flags : per-node arrays of all trees, as held by
        :class:`CompiledTrees`.
    roots : index of each tree's root node, in tree order.
    base : starting score (XGBoost's intercept margin, 0.0 for LightGBM).
    """
    acc = base
    n_trees = roots.shape[0]
    k = 0
    # Four trees walked in lockstep: their independent load chains overlap in the CPU,
    # which a one-tree-at-a-time walk (every step waiting on the previous load) cannot do.
    while k + 4 <= n_trees:
        a, b, c, d = roots[k], roots[k + 1], roots[k + 2], roots[k + 3]
        live = True
        while live:
            live = False
            if _inner(a, left):
                a = _step(x, a, feature, threshold, left, flags)
                live = True
            if _inner(b, left):
                b = _step(x, b, feature, threshold, left, flags)
                live = True
            if _inner(c, left):
                c = _step(x, c, feature, threshold, left, flags)
                live = True
            if _inner(d, left):
                d = _step(x, d, feature, threshold, left, flags)
                live = True
        acc = _add(acc, a, value, flags)
        acc = _add(acc, b, value, flags)
        acc = _add(acc, c, value, flags)
        acc = _add(acc, d, value, flags)
        k += 4
    for j in range(k, n_trees):
        node = roots[j]
        while _inner(node, left):
            node = _step(x, node, feature, threshold, left, flags)
        acc = _add(acc, node, value, flags)
    return acc


@nb.njit(cache=True, nogil=True)
def link(raw: float, kind: int, scale: float) -> float:
    """The booster's output transform of a raw score (``LINK_*``; ``scale`` is LightGBM's
    ``sigmoid`` parameter)."""
    if kind == LINK_SIGMOID:
        return 1.0 / (1.0 + math.exp(-scale * raw))
    if kind == LINK_SIGMOID32:
        z = min(-np.float32(raw), np.float32(88.7))
        denom = np.float32(math.exp(z)) + np.float32(1.0) + np.float32(1e-16)
        return np.float64(np.float32(1.0) / denom)
    return raw


@nb.njit(cache=True, nogil=True)
def _one(
    x: np.ndarray, ints: np.ndarray, floats: np.ndarray, roots: np.ndarray, base: float,
    kind: int, scale: float,
) -> float:  # fmt: skip
    # The hot path takes the node arrays packed in two buffers: each array argument costs
    # numba's dispatcher ~50 ns to type.
    raw = walk(x, ints[0], floats[0], ints[1], floats[1], ints[2], roots, base)
    return link(raw, kind, scale)


@nb.njit(cache=True, nogil=True)
def _many(
    X: np.ndarray, ints: np.ndarray, floats: np.ndarray, roots: np.ndarray, base: float,
    kind: int, scale: float, out: np.ndarray,
) -> None:  # fmt: skip
    for i in range(X.shape[0]):
        out[i] = _one(X[i], ints, floats, roots, base, kind, scale)


@nb.njit(cache=True, nogil=True)
def _logit32(p: float) -> float:
    # XGBoost's LogisticRegression::ProbToMargin, in float32 with logf.
    q = min(max(np.float32(p), _XGB_EPS), np.float32(1.0) - _XGB_EPS)
    return np.float64(-np.float32(math.log(np.float32(1.0) / q - np.float32(1.0))))


def _below_float32(cond: np.ndarray) -> np.ndarray:
    """For each float32 ``c``, the largest double ``t`` with ``float32(v) < c`` exactly when
    ``v <= t``: XGBoost's float32 comparison as one float64 comparison."""
    c = np.asarray(cond, dtype=np.float32)
    if not np.isfinite(c).all():
        raise ValueError("XGBoost split condition is not finite")
    with np.errstate(over="ignore"):
        below = np.nextafter(c, np.float32(-np.inf))
        finite = np.isfinite(below)
        # Halfway between c and the float32 below it; 2**103 is half a step below -FLT_MAX.
        mid = np.where(finite, (below.astype(np.float64) + c) / 2, c - 2.0**103)
        # A double exactly halfway rounds to the even neighbour (overflow counts as even).
        tie_down = ~finite | ((below.view(np.uint32) & 1) == 0)
        t: np.ndarray = np.where(tie_down, mid, np.nextafter(mid, -np.inf))
        if not (
            np.all(t.astype(np.float32) < c)
            and np.all(np.nextafter(t, np.inf).astype(np.float32) >= c)
        ):  # pragma: no cover - guards the arithmetic above
            raise AssertionError("float32 threshold translation failed")
    return t


def _zeroed_threshold(t: float) -> float:
    """A LightGBM threshold for the raw input: LightGBM reads ``|x| <= kZeroThreshold`` as 0.0
    before the walk, which changes a decision only for thresholds in that band."""
    if -K_ZERO_THRESHOLD <= t < K_ZERO_THRESHOLD:
        return K_ZERO_THRESHOLD if t >= 0.0 else math.nextafter(-K_ZERO_THRESHOLD, -math.inf)
    return t


def _float32(text: str) -> float:
    """The float32 nearest the decimal ``text`` (rounded once), as a Python float.

    Going through float64 rounds twice, which can only go wrong when the float64 lands exactly
    halfway between two float32 values; the decimal then decides.
    """
    d = float(text)
    f = np.float32(d)
    if float(f) != d and math.isfinite(d) and np.isfinite(f):
        g = np.nextafter(f, np.float32(math.copysign(math.inf, d - float(f))))
        if (float(f) + float(g)) / 2 == d:
            exact = Decimal(text)
            if exact != Decimal(d):
                f = g if (exact > Decimal(d)) == (float(g) > float(f)) else f
    return float(f)


def _layout(
    trees: list[dict[str, list[Any]]], library: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-tree node lists (local indices, root 0, leaves ``left == -1``) into the
    packed buffers, each tree breadth first with the two children of a node side by side."""
    cols: dict[str, list[Any]] = {k: [] for k in ("f", "l", "g", "t", "v")}
    roots: list[int] = []
    for i, t in enumerate(trees):
        start = len(cols["f"])
        roots.append(start)
        order, seen = [0], {0}
        for src in order:  # grows while iterated: breadth first
            lc, rc = t["left"][src], t["right"][src]
            if lc == _LEAF:
                cols["l"].append(_LEAF)
                cols["f"].append(0)
            else:
                n = len(t["left"])
                if not (0 < lc < n and 0 < rc < n) or lc in seen or rc in seen or lc == rc:
                    raise ValueError(f"{library} tree {i}: child links out of range or shared")
                seen.update((lc, rc))
                cols["l"].append(start + len(order))
                cols["f"].append(t["feature"][src])
                order += [lc, rc]
            cols["g"].append(t["flags"][src])
            cols["t"].append(t["threshold"][src])
            cols["v"].append(t["value"][src])
    ints = np.array([cols["f"], cols["l"], cols["g"]], dtype=np.int32)
    floats = np.array([cols["t"], cols["v"]], dtype=np.float64)
    return ints, floats, np.asarray(roots, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class CompiledTrees:
    """Trees of a booster flattened into arrays, walked by a numba function.

    Build with :meth:`from_lightgbm` or :meth:`from_xgboost`. The per-node arrays and
    ``roots`` are what :func:`walk` takes, in :attr:`arrays` order followed by :attr:`base`;
    numba code of one's own can call
    ``link(walk(x, *trees.arrays, trees.base), trees.link_kind, trees.link_scale)``.
    Thresholds are stored for :func:`walk`'s ``x <= threshold`` rule: XGBoost's float32
    ``float32(x) < condition`` is translated to the equivalent float64 bound.
    """

    n_features: int
    objective: str
    ints: np.ndarray  # rows: feature, left, flags (int32)
    floats: np.ndarray  # rows: threshold, value (float64)
    roots: np.ndarray
    base: float
    link_kind: int
    link_scale: float

    @property
    def feature(self) -> np.ndarray:
        """Feature index read at each node (0 at leaves)."""
        out: np.ndarray = self.ints[0]
        return out

    @property
    def left(self) -> np.ndarray:
        """Left child of each node, -1 at leaves."""
        out: np.ndarray = self.ints[1]
        return out

    @property
    def right(self) -> np.ndarray:
        """Right child of each node (always ``left + 1``), -1 at leaves."""
        return np.where(self.left == _LEAF, _LEAF, self.left + 1)

    @property
    def flags(self) -> np.ndarray:
        """``NAN_LEFT | ZERO_MISSING | FLOAT32`` bits of each node."""
        out: np.ndarray = self.ints[2]
        return out

    @property
    def threshold(self) -> np.ndarray:
        """Split threshold of each node: ``x <= threshold`` goes left (0.0 at leaves)."""
        out: np.ndarray = self.floats[0]
        return out

    @property
    def value(self) -> np.ndarray:
        """Output of each leaf (0.0 at inner nodes)."""
        out: np.ndarray = self.floats[1]
        return out

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(feature, threshold, left, value, flags, roots)``, in :func:`walk`'s order."""
        return self.feature, self.threshold, self.left, self.value, self.flags, self.roots

    @property
    def n_trees(self) -> int:
        """Number of trees walked."""
        return len(self.roots)

    @classmethod
    def from_lightgbm(cls, booster: lgb.Booster) -> CompiledTrees:
        """The trees ``booster.predict`` uses by default (up to ``best_iteration`` when set).

        Raises
        ------
        ValueError
            For multiclass, random-forest, linear-tree or categorical-split models, or an
            objective whose output transform is not reproduced.
        """
        # predict() and dump_model() both default to best_iteration; passed for clarity.
        dump = booster.dump_model(num_iteration=booster.best_iteration, start_iteration=0)
        if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
            raise ValueError(
                f"LightGBM model has {dump.get('num_class')} classes; only one output supported"
            )
        if dump.get("average_output"):
            raise ValueError("LightGBM random-forest (average_output) models are not supported")
        name, kind, scale = _lightgbm_link(str(dump.get("objective", "")))
        trees = [_lightgbm_tree(i, info) for i, info in enumerate(dump["tree_info"])]
        if not trees:
            raise ValueError("LightGBM model holds no trees")
        ints, floats, roots = _layout(trees, "LightGBM")
        model = cls(int(dump["max_feature_idx"]) + 1, name, ints, floats, roots, 0.0, kind, scale)
        model._check("LightGBM")
        return model

    @classmethod
    def from_xgboost(cls, booster: xgb.Booster) -> CompiledTrees:
        """All trees of a ``gbtree`` booster, as ``inplace_predict`` uses by default (it
        ignores ``best_iteration`` unless given an ``iteration_range``).

        Raises
        ------
        ValueError
            For objectives other than ``binary:logistic`` and ``reg:squarederror``, other
            boosters (dart, gblinear), multi-output models or categorical splits.
        """
        doc = json.loads(bytes(booster.save_raw("json")), parse_float=_float32)
        learner = doc["learner"]
        name = learner["objective"]["name"]
        if name not in _XGB_OBJECTIVES:
            raise ValueError(
                f"XGBoost objective {name!r} is not supported "
                f"(supported: {', '.join(sorted(_XGB_OBJECTIVES))})"
            )
        gb = learner["gradient_booster"]
        if gb["name"] != "gbtree":
            raise ValueError(f"XGBoost booster {gb['name']!r} is not supported (only gbtree)")
        param = learner["learner_model_param"]
        if int(param.get("num_class", "0")) > 1 or int(param.get("num_target", "1")) != 1:
            raise ValueError("XGBoost multi-class or multi-target models are not supported")
        # Stored as a bracketed list in 3.x ("[5E-1]"), in the objective's output space.
        scores = [_float32(s) for s in str(param["base_score"]).strip("[]").split(",")]
        if len(scores) != 1:
            raise ValueError(f"XGBoost base_score {param['base_score']!r}: expected one value")
        if name == "binary:logistic":
            base, kind = _logit32(scores[0]), LINK_SIGMOID32
        else:
            base, kind = scores[0], LINK_IDENTITY
        trees = [_xgboost_tree(i, t) for i, t in enumerate(gb["model"]["trees"])]
        if not trees:
            raise ValueError("XGBoost model holds no trees")
        ints, floats, roots = _layout(trees, "XGBoost")
        model = cls(int(param["num_feature"]), name, ints, floats, roots, base, kind, 1.0)
        model._check("XGBoost")
        return model

    def _check(self, library: str) -> None:
        inner = self.left != _LEAF
        if np.any((self.feature[inner] < 0) | (self.feature[inner] >= self.n_features)):
            raise ValueError(f"{library} model: split feature index outside 0..{self.n_features}")

    def _row(self, x: np.ndarray) -> np.ndarray:
        if x.shape != (self.n_features,):
            raise ValueError(f"expected a row of {self.n_features} features, got shape {x.shape}")
        if x.dtype != np.float64:
            x = x.astype(np.float64)
        return x

    def raw_one(self, x: np.ndarray) -> float:
        """Raw score (margin) of one row, a float64 array of ``n_features`` values."""
        x = self._row(x)
        return float(_one(x, self.ints, self.floats, self.roots, self.base, LINK_IDENTITY, 1.0))

    def predict_one(self, x: np.ndarray) -> float:
        """Prediction for one row as the booster's ``predict`` gives it (a probability for
        the binary objectives)."""
        x = self._row(x)
        return float(
            _one(x, self.ints, self.floats, self.roots, self.base, self.link_kind, self.link_scale)
        )

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Raw scores of the rows of ``X`` (n x ``n_features``)."""
        return self._many(X, LINK_IDENTITY)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``X`` (n x ``n_features``)."""
        return self._many(X, self.link_kind)

    def _many(self, X: np.ndarray, kind: int) -> np.ndarray:
        arr = np.ascontiguousarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ValueError(f"expected n x {self.n_features} features, got shape {arr.shape}")
        out = np.empty(arr.shape[0], dtype=np.float64)
        _many(arr, self.ints, self.floats, self.roots, self.base, kind, self.link_scale, out)
        return out


def _lightgbm_link(objective: str) -> tuple[str, int, float]:
    tokens = objective.split()
    name = tokens[0] if tokens else ""
    options = dict(t.split(":", 1) for t in tokens[1:] if ":" in t)
    if name == "binary":
        return name, LINK_SIGMOID, float(options.get("sigmoid", "1"))
    if name in ("cross_entropy", "xentropy"):
        return "cross_entropy", LINK_SIGMOID, 1.0
    if name in _LGB_IDENTITY and "sqrt" not in tokens[1:]:
        return name, LINK_IDENTITY, 1.0
    raise ValueError(f"LightGBM objective {objective!r} is not supported")


def _lightgbm_tree(index: int, info: dict[str, Any]) -> dict[str, list[Any]]:
    categorical = f"LightGBM tree {index} has categorical splits, which are not supported"
    if info.get("num_cat", 0) > 0:
        raise ValueError(categorical)
    t: dict[str, list[Any]] = {k: [] for k in ("left", "right", "feature", "threshold", "value",
                                                "flags")}  # fmt: skip
    stack = [(info["tree_structure"], -1, "")]
    while stack:
        node, parent, side = stack.pop()
        if parent >= 0:
            t[side][parent] = len(t["left"])
        if "leaf_value" in node:
            if "leaf_coeff" in node:
                raise ValueError(f"LightGBM tree {index} is a linear tree, which is not supported")
            _append(t, _LEAF, _LEAF, 0, 0.0, float(node["leaf_value"]), 0)
            continue
        if node["decision_type"] != "<=":
            raise ValueError(categorical)
        thr = float(node["threshold"])
        missing = node["missing_type"]
        if missing == "None":
            # LightGBM reads NaN as 0.0 at such a node.
            flags = NAN_LEFT if 0.0 <= thr else 0
        else:
            flags = (NAN_LEFT if node["default_left"] else 0) | (
                ZERO_MISSING if missing == "Zero" else 0
            )
        stack.append((node["right_child"], len(t["left"]), "right"))
        stack.append((node["left_child"], len(t["left"]), "left"))
        # Children are linked when visited.
        _append(t, 0, 0, int(node["split_feature"]), _zeroed_threshold(thr), 0.0, flags)
    return t


def _append(
    t: dict[str, list[Any]], left: int, right: int, feature: int, threshold: float,
    value: float, flags: int,
) -> None:  # fmt: skip
    for key, item in zip(("left", "right", "feature", "threshold", "value", "flags"),
                         (left, right, feature, threshold, value, flags), strict=True):  # fmt: skip
        t[key].append(item)


def _xgboost_tree(index: int, tree: dict[str, Any]) -> dict[str, list[Any]]:
    if any(tree.get("split_type", [])) or tree.get("categories_nodes"):
        raise ValueError(f"XGBoost tree {index} has categorical splits, which are not supported")
    if int(tree.get("tree_param", {}).get("size_leaf_vector", "1")) > 1:
        raise ValueError(f"XGBoost tree {index} has vector leaves, which are not supported")
    left = np.asarray(tree["left_children"], dtype=np.int64)
    leaf = left == _LEAF
    # A leaf's value is its split_condition; base_weights can differ (the exact method
    # stores the weight before the learning rate there).
    cond = np.asarray(tree["split_conditions"], dtype=np.float64)
    default_left = np.asarray(tree["default_left"], dtype=bool)
    return {
        "left": left.tolist(),
        "right": [int(c) for c in tree["right_children"]],
        "feature": [int(f) for f in tree["split_indices"]],
        "threshold": np.where(leaf, 0.0, _below_float32(np.where(leaf, 0.0, cond))).tolist(),
        "value": np.where(leaf, cond, 0.0).tolist(),
        "flags": np.where(leaf, FLOAT32, np.where(default_left, NAN_LEFT, 0)).tolist(),
    }
