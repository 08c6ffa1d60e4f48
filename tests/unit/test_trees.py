"""The compiled tree walk predicts exactly what the native LightGBM and XGBoost boosters
predict, on ordinary rows, rows sitting on split thresholds, NaN, zeros and tiny values, and
refuses the models it cannot reproduce by name."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import lightgbm as lgb
import numba as nb
import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlcore.execution import CompiledTrees
from mlcore.execution._trees import K_ZERO_THRESHOLD, _float32, link, walk

N_FEATURES = 6
K = K_ZERO_THRESHOLD
# Values each library treats specially: NaN, both zeros, LightGBM's zero band and its edges.
SPECIAL = np.array(
    [np.nan, 0.0, -0.0, K, -K, np.nextafter(K, 1), np.nextafter(-K, -1), np.nextafter(K, 0),
     1e-36, -1e-36, 1e-300, 1e-46, np.inf, -np.inf, 1e39, -1e39]
)  # fmt: skip
LGB_BASE = {"verbose": -1, "num_threads": 1, "deterministic": True, "force_row_wise": True,
            "seed": 3, "num_leaves": 15, "min_data_in_leaf": 5}  # fmt: skip
XGB_BASE = {"max_depth": 5, "eta": 0.3, "nthread": 1, "seed": 0, "tree_method": "hist"}


def _data(seed: int = 1, n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[rng.random(X.shape) < 0.08] = np.nan
    X[rng.random(X.shape) < 0.15] = 0.0
    X[:, 4] = rng.normal(size=n)  # never missing in training: LightGBM missing_type None
    # A feature living around zero, so that LightGBM splits at +-kZeroThreshold.
    X[:, 5] = rng.choice([-1e-36, 1e-36, 0.0, -2e-35, 2e-35, K, -K, 1.0, -1.0], size=n)
    signal = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + X[:, 4]
    y = (signal + 0.5 * rng.normal(size=n) + (X[:, 5] > 0) > 0.3).astype(np.float64)
    yr = 3 * np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 3]) ** 2 + 2 * X[:, 4]
    yr += rng.normal(size=n)
    return X, y, yr


def _fresh_rows(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)) * 1.5
    X[rng.random(X.shape) < 0.1] = np.nan
    X[rng.random(X.shape) < 0.1] = 0.0
    return X


def _probe_rows(split_values: list[tuple[int, float]], seed: int) -> np.ndarray:
    """Fresh rows, then rows with one feature set to a split value or its float64
    neighbours, then rows with one feature set to each special value."""
    base = _fresh_rows(seed)
    rows = [base]
    for k, (feat, value) in enumerate(split_values):
        for v in (value, np.nextafter(value, np.inf), np.nextafter(value, -np.inf)):
            row = base[k % len(base)].copy()
            row[feat] = v
            rows.append(row[None, :])
    for j in range(N_FEATURES):
        block = base[: len(SPECIAL)].copy()
        block[:, j] = SPECIAL
        rows.append(block)
    return np.vstack(rows)


def _lgb_splits(booster: lgb.Booster) -> tuple[list[tuple[int, float]], set[str]]:
    splits, missing, stack = (
        [],
        set(),
        [t["tree_structure"] for t in booster.dump_model()["tree_info"]],
    )
    while stack:
        node = stack.pop()
        if "leaf_value" not in node:
            splits.append((node["split_feature"], node["threshold"]))
            missing.add(node["missing_type"])
            stack += [node["left_child"], node["right_child"]]
    return splits, missing


def _xgb_splits(booster: xgb.Booster) -> list[tuple[int, float]]:
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    out = []
    for t in trees:
        for lc, f, c in zip(
            t["left_children"], t["split_indices"], t["split_conditions"], strict=True
        ):
            if lc != -1:
                c32 = np.float32(c)
                below = np.nextafter(c32, np.float32(-np.inf))
                # The condition, the float32 either side, and the double halfway below it.
                out += [(f, float(c32)), (f, float(np.nextafter(c32, np.float32(np.inf)))),
                        (f, float(below)), (f, (float(below) + float(c32)) / 2)]  # fmt: skip
    return out


def _assert_lgb_exact(booster: lgb.Booster, model: CompiledTrees, X: np.ndarray) -> None:
    np.testing.assert_array_equal(model.raw(X), booster.predict(X, raw_score=True, num_threads=1))
    np.testing.assert_array_equal(model.predict(X), booster.predict(X, num_threads=1))
    for x in X[::53]:
        assert model.raw_one(x) == booster.predict(x[None, :], raw_score=True, num_threads=1)[0]
        assert model.predict_one(x) == booster.predict(x[None, :], num_threads=1)[0]


def _assert_xgb_exact(booster: xgb.Booster, model: CompiledTrees, X: np.ndarray) -> None:
    margin = booster.inplace_predict(X, predict_type="margin")
    proba = booster.inplace_predict(X)
    assert margin.dtype == np.float32
    np.testing.assert_array_equal(model.raw(X), margin.astype(np.float64))
    np.testing.assert_array_equal(model.predict(X), proba.astype(np.float64))
    for i in range(0, len(X), 53):
        assert model.raw_one(X[i]) == margin[i]
        assert model.predict_one(X[i]) == proba[i]


@pytest.mark.parametrize(
    ("params", "target", "missing_types"),
    [
        ({"objective": "binary"}, "y", {"NaN", "None"}),
        ({"objective": "binary", "sigmoid": 2.5}, "y", {"NaN", "None"}),
        ({"objective": "binary", "zero_as_missing": True}, "y", {"Zero"}),
        ({"objective": "binary", "use_missing": False}, "y", {"None"}),
        ({"objective": "cross_entropy"}, "y", {"NaN", "None"}),
        ({"objective": "regression"}, "yr", {"NaN", "None"}),
        ({"objective": "huber"}, "yr", {"NaN", "None"}),
        ({"objective": "quantile", "alpha": 0.7}, "yr", {"NaN", "None"}),
    ],
)
def test_lightgbm_predictions_are_bit_identical(
    params: dict[str, Any], target: str, missing_types: set[str]
) -> None:
    X, y, yr = _data()
    booster = lgb.train(LGB_BASE | params, lgb.Dataset(X, y if target == "y" else yr), 30)
    splits, seen = _lgb_splits(booster)
    assert seen == missing_types  # the missing-value rules under test are really in the model
    model = CompiledTrees.from_lightgbm(booster)
    assert model.n_features == N_FEATURES
    assert model.objective == params["objective"]
    _assert_lgb_exact(booster, model, _probe_rows(splits, seed=7))


def test_lightgbm_splits_at_the_zero_band_edges_are_reproduced() -> None:
    # LightGBM zeroes |x| <= kZeroThreshold before the walk, so x == -kZeroThreshold goes
    # right of a -kZeroThreshold threshold although x <= threshold.
    X, y, _ = _data()
    booster = lgb.train(LGB_BASE | {"objective": "binary"}, lgb.Dataset(X, y), 30)
    thresholds = {t for f, t in _lgb_splits(booster)[0] if f == 5}
    assert {K, -K} <= thresholds
    _assert_lgb_exact(booster, CompiledTrees.from_lightgbm(booster), _probe_rows([], seed=8))


@pytest.mark.parametrize("keep_training_booster", [False, True])
def test_lightgbm_early_stopping_predicts_with_the_best_iteration(
    keep_training_booster: bool,
) -> None:
    X, y, _ = _data()
    booster = lgb.train(
        LGB_BASE | {"objective": "binary", "learning_rate": 0.3},
        lgb.Dataset(X[:1400], y[:1400]),
        300,
        valid_sets=[lgb.Dataset(X[1400:], y[1400:])],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=keep_training_booster,
    )
    assert 0 < booster.best_iteration < 300
    model = CompiledTrees.from_lightgbm(booster)
    assert model.n_trees == booster.best_iteration
    _assert_lgb_exact(booster, model, _fresh_rows(9))


def test_a_lightgbm_single_leaf_tree_is_its_value() -> None:
    X, _, _ = _data()
    booster = lgb.train(
        LGB_BASE | {"objective": "regression"}, lgb.Dataset(X, np.full(len(X), 2.5)), 2
    )
    model = CompiledTrees.from_lightgbm(booster)
    assert np.all(model.left == -1)
    _assert_lgb_exact(booster, model, _fresh_rows(10))


def test_lightgbm_categorical_splits_are_refused_naming_the_tree() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1000, 3))
    X[:, 0] = rng.integers(0, 6, size=1000)
    y = (np.isin(X[:, 0], [1, 4]) ^ (X[:, 1] > 1)).astype(np.float64)
    data = lgb.Dataset(X, y, categorical_feature=[0])
    booster = lgb.train(LGB_BASE | {"objective": "binary"}, data, 5)
    with pytest.raises(ValueError, match=r"LightGBM tree \d+ has categorical splits"):
        CompiledTrees.from_lightgbm(booster)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"objective": "multiclass", "num_class": 3}, "3 classes"),
        ({"objective": "poisson"}, "objective 'poisson"),
        ({"objective": "regression", "reg_sqrt": True}, "objective 'regression sqrt'"),
    ],
)
def test_lightgbm_models_not_reproduced_are_refused(params: dict[str, Any], message: str) -> None:
    X, _, yr = _data(n=500)
    label = np.abs(np.round(yr)) % 3 if params["objective"] != "regression" else yr
    booster = lgb.train(LGB_BASE | params, lgb.Dataset(X, label), 2)
    with pytest.raises(ValueError, match=message):
        CompiledTrees.from_lightgbm(booster)


@pytest.mark.parametrize(
    ("objective", "tree_method"),
    [
        ("binary:logistic", "hist"),
        ("reg:squarederror", "hist"),
        # exact stores base_weights before the learning rate: leaves must come from
        # split_conditions.
        ("binary:logistic", "exact"),
    ],
)
def test_xgboost_margins_and_predictions_are_bit_identical(
    objective: str, tree_method: str
) -> None:
    X, y, yr = _data()
    label = y if objective == "binary:logistic" else yr
    params = XGB_BASE | {"objective": objective, "tree_method": tree_method}
    booster = xgb.train(params, xgb.DMatrix(X, label=label), 40)
    model = CompiledTrees.from_xgboost(booster)
    assert (model.n_features, model.objective) == (N_FEATURES, objective)
    _assert_xgb_exact(booster, model, _probe_rows(_xgb_splits(booster), seed=11))


def _edited(booster: xgb.Booster, edit: Any) -> xgb.Booster:
    doc = json.loads(booster.save_raw("json"))
    edit(doc["learner"])
    return xgb.Booster(model_file=bytearray(json.dumps(doc).encode()))


def test_xgboost_extreme_margins_and_intercepts_are_reproduced() -> None:
    X, y, _ = _data()
    booster = xgb.train(XGB_BASE | {"objective": "binary:logistic"}, xgb.DMatrix(X, label=y), 20)

    def scale_leaves(learner: dict[str, Any]) -> None:
        for t in learner["gradient_booster"]["model"]["trees"]:
            pairs = zip(t["left_children"], t["split_conditions"], strict=True)
            t["split_conditions"] = [c * 40 if lc == -1 else c for lc, c in pairs]

    # Margins beyond +-88.7 exercise XGBoost's clamped float32 sigmoid.
    big = _edited(booster, scale_leaves)
    assert np.abs(big.inplace_predict(X, predict_type="margin")).max() > 88.7
    _assert_xgb_exact(big, CompiledTrees.from_xgboost(big), X)
    # Intercepts near 0 and 1 are clamped to [1e-6, 1 - 1e-6] before the logit.
    for score in ("[1E-7]", "[2E-6]", "[5E-1]", "[9.999999E-1]", "[1E0]"):
        edited = _edited(
            booster, lambda lr, s=score: lr["learner_model_param"].update(base_score=s)
        )
        _assert_xgb_exact(edited, CompiledTrees.from_xgboost(edited), X[:300])


def test_xgboost_early_stopping_still_predicts_with_every_tree() -> None:
    # inplace_predict's default iteration_range (0, 0) means the whole model.
    X, y, _ = _data()
    booster = xgb.train(
        XGB_BASE | {"objective": "binary:logistic", "eta": 0.6},
        xgb.DMatrix(X[:1400], label=y[:1400]),
        300,
        evals=[(xgb.DMatrix(X[1400:], label=y[1400:]), "valid")],
        early_stopping_rounds=3,
        verbose_eval=False,
    )
    assert booster.best_iteration + 1 < booster.num_boosted_rounds()
    model = CompiledTrees.from_xgboost(booster)
    assert model.n_trees == booster.num_boosted_rounds()
    _assert_xgb_exact(booster, model, _fresh_rows(12))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"objective": "reg:absoluteerror"}, "objective 'reg:absoluteerror' is not supported"),
        ({"objective": "multi:softprob", "num_class": 3}, "objective 'multi:softprob'"),
        ({"objective": "binary:logistic", "booster": "dart"}, "booster 'dart'"),
    ],
)
def test_xgboost_models_not_reproduced_are_refused(params: dict[str, Any], message: str) -> None:
    X, y, _ = _data(n=300)
    booster = xgb.train(XGB_BASE | params, xgb.DMatrix(X, label=y), 2)
    with pytest.raises(ValueError, match=message):
        CompiledTrees.from_xgboost(booster)


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[Any, CompiledTrees]]:
    X, y, yr = _data(seed=5)
    lgb_nan = lgb.train(LGB_BASE | {"objective": "binary"}, lgb.Dataset(X, y), 30)
    lgb_zero = lgb.train(LGB_BASE | {"objective": "regression", "zero_as_missing": True},
                         lgb.Dataset(X, yr), 30)  # fmt: skip
    xgb_bin = xgb.train(XGB_BASE | {"objective": "binary:logistic"}, xgb.DMatrix(X, label=y), 30)
    return {
        "lgb_nan": (lgb_nan, CompiledTrees.from_lightgbm(lgb_nan)),
        "lgb_zero": (lgb_zero, CompiledTrees.from_lightgbm(lgb_zero)),
        "xgb_bin": (xgb_bin, CompiledTrees.from_xgboost(xgb_bin)),
    }


_values = st.one_of(
    st.floats(-4, 4),
    st.sampled_from([float(v) for v in SPECIAL]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@given(x=arrays(np.float64, N_FEATURES, elements=_values))
def test_any_row_predicts_as_the_native_boosters(
    models: dict[str, tuple[Any, CompiledTrees]], x: np.ndarray
) -> None:
    for name, (booster, model) in models.items():
        if name.startswith("lgb"):
            assert model.predict_one(x) == booster.predict(x[None, :], num_threads=1)[0]
        else:
            assert model.predict_one(x) == booster.inplace_predict(x[None, :])[0]


@nb.njit
def _own_numba_code(X: np.ndarray, arrays: Any, base: float, kind: int, scale: float) -> np.ndarray:
    out = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        out[i] = link(walk(X[i], *arrays, base), kind, scale)
    return out


def test_the_walk_can_be_called_from_numba_code(
    models: dict[str, tuple[Any, CompiledTrees]],
) -> None:
    X = _fresh_rows(13, n=200)
    for _, model in models.values():
        got = _own_numba_code(X, model.arrays, model.base, model.link_kind, model.link_scale)
        np.testing.assert_array_equal(got, model.predict(X))


def test_rows_of_the_wrong_shape_are_refused(models: dict[str, tuple[Any, CompiledTrees]]) -> None:
    _, model = models["lgb_nan"]
    with pytest.raises(ValueError, match=r"expected a row of 6 features, got shape \(5,\)"):
        model.raw_one(np.zeros(5))
    with pytest.raises(ValueError, match=r"expected a row of 6 features, got shape \(1, 6\)"):
        model.predict_one(np.zeros((1, 6)))
    with pytest.raises(ValueError, match=r"expected n x 6 features, got shape \(2, 7\)"):
        model.predict(np.zeros((2, 7)))
    # Other dtypes are read as float64, not refused.
    assert model.predict_one(np.zeros(6, dtype=np.float32)) == model.predict_one(np.zeros(6))


def test_decimal_text_is_rounded_to_float32_once() -> None:
    # A decimal just above the midpoint of two float32 values whose nearest double IS the
    # midpoint: float64 then float32 would round down to the even neighbour.
    low = np.float32(1.0)
    high = np.nextafter(low, np.float32(2.0))
    mid = (Decimal(float(low)) + Decimal(float(high))) / 2
    text = str(mid + mid * Decimal(2) ** -70)
    assert float(text) == float(mid)
    assert _float32(text) == float(high)
    assert _float32(str(mid - mid * Decimal(2) ** -70)) == float(low)
    assert _float32("3.366869E-1") == float(np.float32(0.3366869))
