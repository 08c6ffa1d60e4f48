"""Optuna tuning: seeded and reproducible, blind to the out-of-sample test part, a no-op with
zero trials."""

from __future__ import annotations

import numpy as np

from mlcore.training import BinaryTrainConfig
from mlcore.training._binary import split_points
from mlcore.training._tune import tune


def _events(n: int = 1_500, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    t0 = np.sort(rng.choice(n * 8, n, replace=False))
    t1 = t0 + rng.integers(1, 49, n)
    X = rng.normal(size=(n, 4))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - X[:, 1])))).astype(int)
    return X, y, t0, t1


CFG = BinaryTrainConfig(max_rounds=60, seed=5)


def test_same_seed_same_trials_and_the_test_part_is_never_seen() -> None:
    X, y, t0, t1 = _events()
    a, sa = tune(X, y, t0, t1, CFG, "logloss", 4)
    b, sb = tune(X, y, t0, t1, CFG, "logloss", 4)
    assert a == b and sa == sb
    assert sa["trials"] == 4 and len(sa["values"]) == 4
    assert sa["best_value"] == min(sa["values"])
    assert a.learning_rate == sa["best_params"]["learning_rate"]
    # Flipping every label of the out-of-sample part changes nothing in the search.
    _, test_start = split_points(len(y), CFG)
    y_flipped = y.copy()
    y_flipped[test_start:] = 1 - y_flipped[test_start:]
    c, sc = tune(X, y_flipped, t0, t1, CFG, "logloss", 4)
    assert c == a and sc["values"] == sa["values"]


def test_pr_auc_is_maximised_and_zero_trials_change_nothing() -> None:
    X, y, t0, t1 = _events(seed=1)
    _, s = tune(X, y, t0, t1, CFG, "pr_auc", 3)
    assert s["best_value"] == max(s["values"]) and s["goal"].startswith("max")
    same, s0 = tune(X, y, t0, t1, CFG, "pr_auc", 0)
    assert same is CFG and s0 == {"trials": 0}
