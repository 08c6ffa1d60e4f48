"""Binary training: a real signal gives a clear out-of-sample AUC, the canary passes on an
honest pipeline and fires on a planted label leak, and the same data and seed give the same
model bytes."""

from __future__ import annotations

import numpy as np
import pytest

from mlcore.training import BinaryTrainConfig, recent_hit_rate, train_binary


def _events(n: int = 3_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t0 = np.sort(rng.choice(n * 8, n, replace=False))
    t1 = t0 + rng.integers(1, 49, n)
    X = rng.normal(size=(n, 5))
    logit = 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.6 * np.tanh(X[:, 2] * X[:, 3]) + 1.0
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y, t0, t1


FAST = BinaryTrainConfig(max_rounds=200, canary_repeats=3, seed=3)


@pytest.fixture(scope="module")
def honest() -> tuple[object, np.ndarray]:
    X, y, t0, t1 = _events()
    return train_binary(X, y, t0, t1, FAST, feature_names=["a", "b", "c", "d", "e"]), y


def test_real_signal_is_found_and_the_canary_passes(honest: tuple[object, np.ndarray]) -> None:
    result, _ = honest
    m = result.metrics  # type: ignore[attr-defined]
    assert result.status == "ok", result.blocked_reasons  # type: ignore[attr-defined]
    assert m["oos_raw"]["auc"] > 0.7
    assert m["cv_out_of_fold"]["auc"] > 0.7
    assert len(m["cv_folds"]) == 5
    assert abs(m["canary"]["auc_mean"] - 0.5) <= 0.03
    assert max(m["feature_importance"], key=m["feature_importance"].get) == "a"
    # Isotonic calibration on held-out events: the calibrated ECE is small.
    assert m["oos_calibrated"]["ece"] < 0.06


def test_a_label_leak_fires_the_canary_and_blocks_the_run() -> None:
    X, y, t0, t1 = _events(seed=1)

    def leaky_hit_rate(labels: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        # Bug: averages the labels of the 5 events around each one, its own included -
        # labels nobody knows yet at t0.
        return np.convolve(labels, np.ones(5) / 5, mode="same")

    result = train_binary(X, y, t0, t1, FAST, label_features=leaky_hit_rate)
    assert result.status == "blocked"
    assert result.metrics["canary"]["auc_mean"] > 0.6
    assert any("leakage canary" in r for r in result.blocked_reasons)


def test_labels_known_at_the_start_are_not_a_leak() -> None:
    X, y, t0, t1 = _events(seed=2)
    result = train_binary(
        X, y, t0, t1, FAST, label_features=lambda lab, a, b: recent_hit_rate(lab, a, b, 20)
    )
    assert result.metrics["canary"]["passed"], result.metrics["canary"]


def test_recent_hit_rate_uses_only_resolved_labels() -> None:
    y = np.array([1, 0, 1, 1, 0])
    t0 = np.array([0, 10, 20, 30, 40])
    t1 = np.array([25, 12, 22, 45, 41])
    rate = recent_hit_rate(y, t0, t1, window=2)
    # At t0=30 the resolved events are #1 (t1=12) and #2 (t1=22) and #0 (t1=25): last two by
    # resolution time are #2 and #0 -> mean 1.0. At t0=20 only #1 has resolved -> NaN.
    assert np.isnan(rate[:3]).all()
    assert rate[3] == 1.0 and rate[4] == 1.0


def test_same_data_and_seed_give_the_same_model_bytes() -> None:
    X, y, t0, t1 = _events(n=1_500, seed=4)
    cfg = BinaryTrainConfig(max_rounds=80, canary_repeats=1, seed=11)
    a = train_binary(X, y, t0, t1, cfg)
    b = train_binary(X, y, t0, t1, cfg)
    assert a.model.booster_.model_to_string() == b.model.booster_.model_to_string()
    assert a.calibrator.to_dict() == b.calibrator.to_dict()
    # The stored model (up to the best iteration) scores as the in-memory one.
    import lightgbm as lgb

    from mlcore.training._binary import model_bytes

    suffix, body = model_bytes(a.model)
    stored = lgb.Booster(model_str=body.decode())
    assert suffix == "lgbm.txt"
    np.testing.assert_array_equal(
        stored.predict(X[:100], raw_score=True), a.model.decision_function(X[:100])
    )


def test_bad_inputs_are_refused() -> None:
    X, y, t0, t1 = _events(n=500)
    with pytest.raises(ValueError, match="0/1 labels"):
        train_binary(X, np.r_[y[:-1], -1], t0, t1, FAST)
    with pytest.raises(ValueError, match="time order"):
        train_binary(X, y, t0[::-1], t1, FAST)
    with pytest.raises(ValueError, match="n x features"):
        train_binary(X[:10], y, t0, t1, FAST)


def test_a_calibration_part_without_both_classes_is_refused_clearly() -> None:
    X, y, t0, t1 = _events(n=1_000, seed=6)
    y = y.copy()
    y[600:800] = 1  # the calibration part (60%-80%) holds a single class
    with pytest.raises(ValueError, match=r"calibration part .* at least 5 of each class"):
        train_binary(X, y, t0, t1, FAST)


def test_xgboost_is_selectable_calibrated_and_reproducible() -> None:
    import xgboost as xgb
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from mlcore.training._binary import model_bytes

    X, y, t0, t1 = _events(n=2_000, seed=7)
    cfg = BinaryTrainConfig(max_rounds=150, canary_repeats=1, seed=3, library="xgboost")
    a = train_binary(X, y, t0, t1, cfg)
    assert isinstance(a.model, xgb.XGBClassifier)
    assert a.metrics["library"] == "xgboost" and a.metrics["oos_raw"]["auc"] > 0.7
    assert a.calibrator.response == "predict_proba"
    # The stored calibration replays scikit-learn's on the model's probabilities.
    cal = CalibratedClassifierCV(FrozenEstimator(a.model), method="isotonic")
    Xc, yc = X[1_200:1_600], y[1_200:1_600]
    cal.fit(Xc, yc)
    iso = cal.calibrated_classifiers_[0].calibrators[0]
    np.testing.assert_allclose(
        np.interp(a.model.predict_proba(X[:50])[:, 1], iso.X_thresholds_, iso.y_thresholds_),
        cal.predict_proba(X[:50])[:, 1],
        atol=1e-15,
    )
    suffix, body = model_bytes(a.model)
    b = train_binary(X, y, t0, t1, cfg)
    assert suffix == "xgb.json" and body == model_bytes(b.model)[1]
    booster = xgb.Booster()
    booster.load_model(bytearray(body))
    np.testing.assert_allclose(
        booster.inplace_predict(X[:50]), a.model.predict_proba(X[:50])[:, 1], rtol=1e-6
    )


def test_unknown_library_is_refused() -> None:
    X, y, t0, t1 = _events(n=600)
    with pytest.raises(ValueError, match="library must be"):
        train_binary(X, y, t0, t1, BinaryTrainConfig(library="catboost"))


def test_bar_numbers_follow_the_configured_timeframes() -> None:
    from mlcore.training import bar_numbers

    ts = np.array([0, 3_600_000_000_000, 7_200_000_000_000])
    assert bar_numbers(ts, "1h").tolist() == [0, 1, 2]
    assert bar_numbers(ts, "1min").tolist() == [0, 60, 120]
    with pytest.raises(ValueError, match="unknown timeframe"):
        bar_numbers(ts, "1m")
