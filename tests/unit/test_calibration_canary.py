"""Isotonic calibration replayed from JSON equals scikit-learn's CalibratedClassifierCV over a
frozen LightGBM model; the canary's control keeps each block's labels and breaks the rest."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from mlcore.execution import IsotonicCalibrator
from mlcore.training import fit_isotonic, permute_within_blocks


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def test_replayed_calibration_equals_sklearn() -> None:
    X, y = _data(3_000, 0)
    model = lgb.LGBMClassifier(
        n_estimators=60, num_leaves=15, learning_rate=0.1, random_state=0, verbose=-1
    ).fit(X[:2_000], y[:2_000])
    cal = fit_isotonic(model, X[2_000:2_500], y[2_000:2_500])
    want = (
        CalibratedClassifierCV(FrozenEstimator(model), method="isotonic")
        .fit(X[2_000:2_500], y[2_000:2_500])
        .predict_proba(X[2_500:])[:, 1]
    )
    raw = model.decision_function(X[2_500:])
    # The same score the native booster gives on the hot path.
    np.testing.assert_array_equal(raw, model.booster_.predict(X[2_500:], raw_score=True))
    np.testing.assert_allclose(cal.predict(raw), want, rtol=0, atol=1e-15)
    again = IsotonicCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(again.predict(raw), cal.predict(raw))
    assert np.all(np.diff(cal.predict(np.linspace(-10, 10, 101))) >= 0)
    with pytest.raises(ValueError, match="not a fitted probabilistic classifier"):
        fit_isotonic(object(), X[:10], y[:10])


def test_bad_calibrator_data_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks 'y_thresholds'"):
        IsotonicCalibrator.from_dict({"x_thresholds": [0.0, 1.0]})
    with pytest.raises(ValueError, match="non-decreasing"):
        IsotonicCalibrator([0.0, 0.5, 1.0], [0.2, 0.1, 0.9])
    with pytest.raises(ValueError, match="same length"):
        IsotonicCalibrator([0.0, 1.0], [0.5])


def test_control_target_keeps_block_rates_and_breaks_the_link() -> None:
    rng = np.random.default_rng(1)
    t0 = np.sort(rng.choice(50_000, 5_000, replace=False))
    x = rng.normal(size=5_000)
    y = (x + rng.normal(scale=0.5, size=5_000) > 0).astype(int)
    perm = permute_within_blocks(y, t0, 240, np.random.default_rng(2))
    block = (t0 - t0.min()) // 240
    for b in np.unique(block):
        assert perm[block == b].sum() == y[block == b].sum()
    assert abs(np.corrcoef(x, perm)[0, 1]) < 0.05 < np.corrcoef(x, y)[0, 1]
    same = permute_within_blocks(y, t0, 240, np.random.default_rng(2))
    np.testing.assert_array_equal(perm, same)  # seeded: reproducible


def test_control_target_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        permute_within_blocks(np.zeros(3), np.arange(4), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="block_bars"):
        permute_within_blocks(np.zeros(3), np.arange(3), 0, np.random.default_rng(0))
