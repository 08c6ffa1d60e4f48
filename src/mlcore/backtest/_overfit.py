"""Is the chosen backtest better than what the search would find by chance?

- Deflated Sharpe Ratio (Bailey & López de Prado 2014): the probability that the true
  per-period Sharpe exceeds the expected maximum Sharpe of ``n_trials`` unskilled strategies
  whose Sharpes vary with variance ``trial_sharpe_var``, correcting for skew and kurtosis
  (probabilistic Sharpe ratio against that benchmark).
- Probability of Backtest Overfitting by CSCV (Bailey, Borwein, López de Prado, Zhu 2015): the
  observations of every configuration's return series are cut into ``n_splits`` contiguous
  blocks; for each way of taking half of them as in-sample, the in-sample best configuration
  (by Sharpe) is ranked out of sample; PBO is the share of splits where it lands at or below
  the median (logit of its relative rank < 0).

Both are cross-checked against the ``purgedcv`` package in the tests.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

_EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, trial_sharpe_var: float) -> float:
    """Expected maximum Sharpe of ``n_trials`` unskilled trials (0 for one trial)."""
    if n_trials < 1 or trial_sharpe_var < 0:
        raise ValueError(
            f"need n_trials >= 1 and a variance >= 0, got {n_trials}, {trial_sharpe_var}"
        )
    if n_trials == 1:
        return 0.0
    z = (1 - _EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials) + _EULER_GAMMA * stats.norm.ppf(
        1 - 1 / (n_trials * math.e)
    )
    return float(math.sqrt(trial_sharpe_var) * z)


def deflated_sharpe(returns: ArrayLike, n_trials: int, trial_sharpe_var: float) -> float:
    """Deflated Sharpe Ratio of per-period ``returns`` (a probability in [0, 1]); the trial
    variance is of per-period Sharpes."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or len(r) < 3 or not np.isfinite(r).all():
        raise ValueError("returns must be at least 3 finite values")
    std = float(r.std(ddof=0))
    if std == 0:
        raise ValueError("returns have zero variance: the Sharpe ratio is undefined")
    sr = float(r.mean()) / std
    skew = float(stats.skew(r, bias=False))
    kurt = float(stats.kurtosis(r, bias=False, fisher=False))
    benchmark = expected_max_sharpe(n_trials, trial_sharpe_var)
    denom = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    if denom <= 0:
        raise ValueError("return moments too extreme for the probabilistic Sharpe ratio")
    return float(stats.norm.cdf((sr - benchmark) * math.sqrt(len(r) - 1) / math.sqrt(denom)))


def _sharpe(block: np.ndarray) -> np.ndarray:
    """Per-column mean / sample std; a column without spread scores 0 (as purgedcv does: it is
    selected in sample when every other column's Sharpe is negative, so callers drop flat
    columns first)."""
    std = block.std(axis=0, ddof=1)
    flat = np.ptp(block, axis=0) == 0
    out: np.ndarray = np.where(
        flat | (std == 0), 0.0, block.mean(axis=0) / np.where(std == 0, 1, std)
    )
    return out


def probability_of_overfitting(returns: ArrayLike, n_splits: int = 16) -> dict[str, Any]:
    """PBO by CSCV over ``returns`` (observations x configurations, e.g. one column per θ)."""
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"returns must be observations x (>= 2) configurations, got {m.shape}")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be even and >= 2, got {n_splits}")
    n_obs, n_cfg = m.shape
    if n_obs < n_splits:
        raise ValueError(f"{n_obs} observations cannot fill {n_splits} blocks")
    if not np.isfinite(m).all():
        raise ValueError("returns must be finite")
    size, extra = divmod(n_obs, n_splits)
    bounds = np.cumsum([0] + [size + (k < extra) for k in range(n_splits)])
    logits = []
    for oos_blocks in combinations(range(n_splits), n_splits // 2):
        oos = np.zeros(n_obs, dtype=bool)
        for b in oos_blocks:
            oos[bounds[b] : bounds[b + 1]] = True
        best = int(np.argmax(_sharpe(m[~oos])))
        omega = float(stats.rankdata(_sharpe(m[oos]))[best] / (n_cfg + 1))
        logits.append(math.log(omega / (1 - omega)))
    arr = np.asarray(logits)
    return {
        "pbo": float(np.mean(arr < 0)),
        "splits": len(arr),
        "logit_median": float(np.median(arr)),
    }
