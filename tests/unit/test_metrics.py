"""Metrics (binary and 3-class): equal to scikit-learn's where it has them, ECE checked by
hand, undefined metrics reported as missing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, f1_score, log_loss, roc_auc_score

from mlcore.validation import (
    binary_metrics,
    expected_calibration_error,
    missing_metrics,
    multiclass_metrics,
)


def _sample(n: int = 5_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p**1.5).astype(int)  # miscalibrated on purpose
    return y, p


def test_brier_auc_and_calibration_equal_sklearn() -> None:
    y, p = _sample()
    m = binary_metrics(y, p)
    assert m["brier"] == brier_score_loss(y, p)
    assert m["auc"] == roc_auc_score(y, p)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert m["calibration_curve"]["prob_true"] == prob_true.tolist()
    assert m["calibration_curve"]["prob_pred"] == prob_pred.tolist()
    # Each kept bin's sample count: the curve's mean prediction is that bin's mean of p.
    counts = m["calibration_curve"]["count"]
    assert len(counts) == len(prob_pred) and sum(counts) == len(p)
    bins = np.minimum((p * 10).astype(int), 9)  # [k/10, (k+1)/10); no p is on an edge here
    assert counts == np.bincount(bins, minlength=10)[np.bincount(bins, minlength=10) > 0].tolist()
    assert missing_metrics(m) == []


def test_ece_by_hand() -> None:
    # Bins [0, .5) and [.5, 1]: bin 0 predicts 0.2 and 0.4 (mean 0.3), observes 0 and 1 (0.5);
    # bin 1 predicts 0.9 twice and observes 1 and 1.
    y = np.array([0, 1, 1, 1])
    p = np.array([0.2, 0.4, 0.9, 0.9])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.2 + 0.5 * 0.1)


def test_ece_is_the_weighted_gap_of_the_reported_curve() -> None:
    y, p = _sample(seed=1)
    m = binary_metrics(y, p, n_bins=10)
    counts = np.bincount(np.minimum((p * 10).astype(int), 9), minlength=10)
    weights = counts[counts > 0] / len(p)
    gaps = np.abs(
        np.array(m["calibration_curve"]["prob_pred"]) - m["calibration_curve"]["prob_true"]
    )
    assert m["ece"] == pytest.approx(float((weights * gaps).sum()), rel=1e-12)
    assert m["ece"] > 0.05  # the sample is miscalibrated
    y_cal = (
        np.random.default_rng(2).uniform(0, 1, 200_000)
        < (q := np.random.default_rng(3).uniform(0, 1, 200_000))
    ).astype(int)
    assert expected_calibration_error(y_cal, q) < 0.01


def test_one_class_makes_auc_missing_and_the_run_blocked() -> None:
    m = binary_metrics(np.zeros(50, dtype=int), np.full(50, 0.3))
    assert m["auc"] is None and m["pr_auc"] is None
    assert set(missing_metrics(m)) == {"auc", "pr_auc", "f1"}
    assert missing_metrics({"auc": 0.7}) == ["pr_auc", "logloss", "brier", "ece", "f1"]
    assert "brier" in missing_metrics({**binary_metrics(*_sample()), "brier": float("nan")})


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.5], "same non-zero length"),
        ([0, 2], [0.5, 0.5], "0 or 1"),
        ([0, 1], [0.5, 1.5], "within \\[0, 1\\]"),
        ([0, 1], [0.5, np.nan], "finite"),
    ],
)
def test_bad_inputs_are_refused(y: list[int], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        binary_metrics(np.array(y), np.array(p))


def test_ece_bins_probabilities_on_an_edge_as_the_calibration_curve_does() -> None:
    # 0.5 sits on the edge of two bins: scikit-learn puts it in the lower one.
    y = np.array([0, 1, 1, 1])
    p = np.array([0.2, 0.5, 0.5, 0.9])
    prob_true, prob_pred = calibration_curve(y, p, n_bins=2, strategy="uniform")
    assert prob_pred.tolist() == pytest.approx([0.4, 0.9])
    want = 0.75 * abs(prob_pred[0] - prob_true[0]) + 0.25 * abs(prob_pred[1] - prob_true[1])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(want)


def test_multiclass_metrics_equal_sklearn_on_the_same_inputs() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 600)
    p = rng.dirichlet([2, 2, 2], 600)
    p[np.arange(600), y] += 0.3  # some skill
    p /= p.sum(axis=1, keepdims=True)
    m = multiclass_metrics(y, p, prior=[0.3, 0.4, 0.3])
    assert m["brier"] == brier_score_loss(y, p, labels=[0, 1, 2])
    assert m["logloss"] == log_loss(y, p, labels=[0, 1, 2])
    assert m["auc"] == roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert m["f1"] == f1_score(y, p.argmax(axis=1), average="macro")
    assert m["prior_logloss"] == pytest.approx(-np.mean(np.log(np.array([0.3, 0.4, 0.3])[y])))
    for c in range(3):
        prob_true, prob_pred = calibration_curve(y == c, p[:, c], n_bins=10, strategy="uniform")
        curve = m["calibration_curve"]["one_vs_rest"][str(c)]
        assert curve["prob_true"] == prob_true.tolist()
        assert curve["prob_pred"] == prob_pred.tolist()
    assert 0.5 < m["auc"] < 1 and m["accuracy"] > 0.4


def test_multiclass_ece_is_the_top_label_gap_by_hand() -> None:
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.1, 0.3], [0.2, 0.2, 0.6]])
    # Top labels 0, 1, 0, 2 with confidences 0.7, 0.8, 0.6, 0.6; correct 1, 1, 0, 1.
    # A confidence on an edge falls into the bin below: (0.5, 0.6] = {0.6, 0.6} (half right),
    # (0.6, 0.7] = {0.7} and (0.7, 0.8] = {0.8} (both right).
    want = 0.5 * abs(0.6 - 0.5) + 0.25 * abs(0.7 - 1) + 0.25 * abs(0.8 - 1)
    m = multiclass_metrics(y, p)
    assert m["ece"] == pytest.approx(want)
    assert m["ece_kind"] == "top-label" and m["accuracy"] == 0.75
    assert "prior_logloss" not in m


def test_multiclass_metrics_undefined_without_every_class_and_bad_input_refused() -> None:
    p = np.full((4, 3), 1 / 3)
    m = multiclass_metrics(np.array([0, 1, 1, 0]), p)
    assert m["auc"] is None and m["pr_auc"] is None
    assert missing_metrics(m) == ["auc", "pr_auc"]
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        multiclass_metrics(np.array([0, 1, 3, 0]), p)
    with pytest.raises(ValueError, match="same n"):
        multiclass_metrics(np.array([0, 1]), p)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        multiclass_metrics(np.array([0, 1, 2, 0]), p * 4)
