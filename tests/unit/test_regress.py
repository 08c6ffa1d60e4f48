"""AI3 regressor: finds a real signal, stays in [0, 1], refuses bad targets; metrics equal
scikit-learn's and SciPy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import mean_squared_error

from mlcore.training import BinaryTrainConfig
from mlcore.training._regress import _predict, regression_metrics, train_regressor


def _events(n: int = 3_000, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    t0 = np.sort(rng.choice(n * 8, n, replace=False))
    t1 = t0 + rng.integers(1, 49, n)
    X = rng.normal(size=(n, 4))
    y = np.clip(0.5 + 0.25 * X[:, 0] - 0.15 * X[:, 1] + rng.normal(0, 0.1, n), 0, 1)
    return X, y, t0, t1


def test_signal_is_found_and_predictions_stay_in_bounds() -> None:
    X, y, t0, t1 = _events()
    r = train_regressor(X, y, t0, t1, BinaryTrainConfig(max_rounds=300, seed=1))
    assert r.blocked_reasons == []
    assert r.metrics["oos"]["r2"] > 0.6
    assert r.metrics["oos"]["rmse"] < 0.6 * r.metrics["oos_mean_baseline_rmse"]
    extreme = _predict(r.model, np.vstack([np.full(4, 50.0), np.full(4, -50.0)]))
    assert ((extreme >= 0) & (extreme <= 1)).all()
    assert len(r.metrics["cv_folds"]) == 5


def test_metrics_equal_the_references() -> None:
    rng = np.random.default_rng(3)
    y, p = rng.uniform(size=200), rng.uniform(size=200)
    m = regression_metrics(y, p)
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p)), rel=1e-15)
    assert m["spearman"] == pytest.approx(spearmanr(y, p).statistic, rel=1e-15)
    assert regression_metrics(y, np.full(200, 0.5))["spearman"] is None  # undefined -> missing


def test_bad_targets_are_refused() -> None:
    X, y, t0, t1 = _events(n=600)
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        train_regressor(X, np.r_[y[:-1], 1.5], t0, t1, BinaryTrainConfig())
    with pytest.raises(ValueError, match="time order"):
        train_regressor(X, y, t0[::-1], t1, BinaryTrainConfig())
