"""The random forest stored as its tree arrays predicts exactly what scikit-learn predicts, and
a damaged file is refused with a message naming the fault."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlcore.models import ForestModel, forest_to_json


def _forest(n_classes: int, seed: int, **kw: object) -> tuple[RandomForestClassifier, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 6))
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=len(X))
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    params = {"n_estimators": 25, "max_depth": 6, "random_state": seed, "n_jobs": 1} | kw
    return RandomForestClassifier(**params).fit(X, y), X  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n_classes", "kw"),
    [
        (3, {}),
        (2, {"max_depth": 12, "min_samples_leaf": 1}),
        (3, {"max_features": 0.3, "max_samples": 0.3, "min_samples_leaf": 40}),
    ],
)
def test_the_stored_forest_predicts_bit_for_bit_as_sklearn(
    n_classes: int, kw: dict[str, object]
) -> None:
    rf, X = _forest(n_classes, seed=n_classes, **kw)
    model = ForestModel.from_json(forest_to_json(rf))
    rng = np.random.default_rng(1)
    X_new = rng.normal(size=(2000, 6)) * 1.5
    np.testing.assert_array_equal(model.predict_proba(X_new), rf.predict_proba(X_new))
    np.testing.assert_array_equal(model.predict_proba(X[:500]), rf.predict_proba(X[:500]))
    assert model.classes == tuple(range(n_classes))


def test_values_at_a_threshold_take_the_branch_sklearn_takes() -> None:
    # sklearn compares the input cast to float32 with float64 thresholds: values within a
    # float32 step of a threshold must go the same way here.
    rf, _ = _forest(3, seed=5)
    tree = rf.estimators_[0].tree_
    inner = np.flatnonzero(tree.children_left != -1)
    rows = []
    for node in inner[:40]:
        for delta in (-1e-9, 0.0, 1e-9, -1e-6, 1e-6):
            row = np.zeros(6)
            row[tree.feature[node]] = tree.threshold[node] + delta
            rows.append(row)
    X = np.array(rows)
    model = ForestModel.from_json(forest_to_json(rf))
    np.testing.assert_array_equal(model.predict_proba(X), rf.predict_proba(X))


def test_the_file_is_deterministic_json_without_pickle() -> None:
    rf, _ = _forest(3, seed=2)
    data = forest_to_json(rf)
    assert data == forest_to_json(rf)
    doc = json.loads(data)
    assert doc["format"] == "mlcore.random_forest" and len(doc["trees"]) == 25


def _doc() -> dict[str, object]:
    rf, _ = _forest(3, seed=3, n_estimators=2)
    doc: dict[str, object] = json.loads(forest_to_json(rf))
    return doc


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: b"\x00not json", "not JSON"),
        (lambda d: json.dumps({**d, "format": "pickle"}).encode(), "not a mlcore.random_forest"),
        (lambda d: json.dumps({**d, "version": 9}).encode(), "version 9"),
        (lambda d: json.dumps({**d, "trees": []}).encode(), "holds no trees"),
        (lambda d: json.dumps({**d, "trees": [{"left": [1]}]}).encode(), "malformed tree data"),
        (
            lambda d: json.dumps(
                {**d, "trees": [{**d["trees"][0], "left": [0, *d["trees"][0]["left"][1:]]}]}  # type: ignore[index]
            ).encode(),
            "out of range",
        ),
        (
            lambda d: json.dumps(
                {**d, "trees": [{**d["trees"][0], "value": d["trees"][0]["value"][:-1]}]}  # type: ignore[index]
            ).encode(),
            "malformed tree data",
        ),
    ],
)
def test_a_damaged_file_is_refused_by_name(damage: object, message: str) -> None:
    bad = damage(_doc())  # type: ignore[operator]
    with pytest.raises(ValueError, match=message) as err:
        ForestModel.from_json(bad, "ensemble_level3.random_forest.json")
    assert str(err.value).startswith("ensemble_level3.random_forest.json: ")


def test_wrong_width_or_missing_values_are_refused() -> None:
    rf, _ = _forest(3, seed=4)
    model = ForestModel.from_json(forest_to_json(rf))
    with pytest.raises(ValueError, match="expected n x 6 features"):
        model.predict_proba(np.zeros((2, 5)))
    X = np.zeros((2, 6))
    X[1, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.predict_proba(X)
