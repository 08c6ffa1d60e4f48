"""Deflated Sharpe and PBO equal the purgedcv package's on the same inputs, and behave."""

from __future__ import annotations

import numpy as np
import pytest
from purgedcv import deflated_sharpe_ratio, probability_of_backtest_overfitting

from mlcore.backtest._overfit import (
    deflated_sharpe,
    expected_max_sharpe,
    probability_of_overfitting,
)


@pytest.mark.parametrize(("n_trials", "var"), [(1, 0.0), (10, 0.002), (200, 0.01)])
def test_deflated_sharpe_equals_purgedcv(n_trials: int, var: float) -> None:
    r = np.random.default_rng(n_trials).standard_t(5, 750) * 0.01 + 0.0008
    assert deflated_sharpe(r, n_trials, var) == pytest.approx(
        deflated_sharpe_ratio(r, n_trials, var), rel=1e-12, abs=1e-15
    )


def test_more_trials_deflate_more() -> None:
    r = np.random.default_rng(0).normal(0.001, 0.01, 500)
    values = [deflated_sharpe(r, n, 0.003) for n in (1, 10, 100, 1000)]
    assert values == sorted(values, reverse=True) and values[0] > 0.5
    assert expected_max_sharpe(1, 0.5) == 0.0


# 16 splits are 12,870 combinations for purgedcv's reference loop: ~20-40 s, so `slow`.
@pytest.mark.parametrize("n_splits", [4, 8, pytest.param(16, marks=pytest.mark.slow)])
def test_pbo_equals_purgedcv(n_splits: int) -> None:
    rng = np.random.default_rng(n_splits)
    noise = rng.normal(0, 0.01, (600, 12))
    noise[:, 3] += 0.002  # one configuration with real skill
    mine = probability_of_overfitting(noise, n_splits)
    theirs = probability_of_backtest_overfitting(noise.T, n_splits)
    assert mine["pbo"] == theirs.pbo
    assert mine["splits"] == theirs.n_combos
    assert mine["logit_median"] == pytest.approx(float(np.median(theirs.logits)), rel=1e-12)


def test_pbo_separates_skill_from_noise() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, (800, 20))
    assert 0.2 < probability_of_overfitting(noise, 10)["pbo"] < 0.8
    skill = noise.copy()
    skill[:, 5] += 0.003
    assert probability_of_overfitting(skill, 10)["pbo"] < 0.05


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="n_splits must be even"):
        probability_of_overfitting(np.zeros((100, 3)), 5)
    with pytest.raises(ValueError, match=">= 2\\) configurations"):
        probability_of_overfitting(np.zeros((100, 1)))
    with pytest.raises(ValueError, match="zero variance"):
        deflated_sharpe(np.zeros(10), 5, 0.01)
