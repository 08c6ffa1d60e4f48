"""Calibration of the bootstrap null by a second-level bootstrap.

The first-level null (``null_table``) under-states the spread of the statistics: blocks break
the dependence at their joins (short windows' means vary less than the process's own), long
memory is cut at the block length, and its tail quantiles come from one autocorrelated
training window, so they are as often too low as too high and the alarms above them add up.
The second level measures that in a world where the truth is known: the training window's
stationary bootstrap plays the process; ``replicates`` bootstrap copies of the training window
play training windows, each with its own reference and null (``draws`` windows), and
``windows`` fresh bootstrap windows of the live size are tested against each. Per feature and
check, the scale is the (1 − α) quantile of observed / threshold over all replicates and
windows (at least 1): the factor by which the thresholds must grow for the replicated
false-alarm rate to be α. The second level sees the bootstrap's shortfall only in part (its
world, the bootstrap of the training window, is itself less dependent than the process), so
the scale is raised to ``power``, an empirical constant (analytics_policy
drift.calibration_power; measured on AR(1) and block-bootstrapped real bars, see
docs/benchmarks.md: 1 and 2 left the single-test rate of real bars at 1.1-1.3 % for α = 1 %).
The main null is then multiplied by it (thresholds and p-values)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcore.feedback._blocksums import prefix, scored_windows
from mlcore.feedback._drift import Floats, Reference, psi_from_shares, reference, shift_statistic
from mlcore.feedback._nullsim import null_table, stationary_indices


@dataclass(frozen=True)
class Calibration:
    """Per feature, the factors the PSI and mean-shift null distributions are scaled by."""

    psi_scale: Floats
    shift_scale: Floats
    replicates: int
    windows: int


@dataclass(frozen=True)
class CalibrationPlan:
    """How the second-level bootstrap is run (analytics_policy drift.calibration_*)."""

    replicates: int
    draws: int
    windows: int
    power: float
    psi_bins: int


def _scale(ratios: Floats, alpha: float, power: float) -> Floats:
    out = np.ones(ratios.shape[1])
    for j in range(ratios.shape[1]):
        r = ratios[:, j][np.isfinite(ratios[:, j])]
        if r.size:
            out[j] = max(1.0, float(np.quantile(r, 1.0 - alpha, method="higher"))) ** power
    return out


def calibrate(
    train: Floats, ref: Reference, window_bars: int, block_bars: int, alpha: float,
    plan: CalibrationPlan, seed: int,
) -> Calibration:  # fmt: skip
    """The null's scale factors for a training window and live window size (see the module)."""
    n, f = train.shape
    rng = np.random.default_rng([seed, window_bars, block_bars, 2])
    psi_r = np.empty((plan.replicates * plan.windows, f))
    shift_r = np.empty((plan.replicates * plan.windows, f))
    for r in range(plan.replicates):
        copy = train[stationary_indices(rng, n, n, 1, block_bars)[0]]
        ref_r = reference(copy, ref.features, plan.psi_bins, ref.epsilon)
        q_psi, q_shift = null_table(copy, ref_r, window_bars, block_bars, plan.draws,
                                    int(rng.integers(2**31))).thresholds(alpha)  # fmt: skip
        live = scored_windows(prefix(train, ref_r), rng, window_bars, plan.windows, block_bars,
                              ref.epsilon)  # fmt: skip
        rows = slice(r * plan.windows, (r + 1) * plan.windows)
        with np.errstate(divide="ignore", invalid="ignore"):
            for j in range(f):
                psi = psi_from_shares(ref_r.shares[j], live.shares[j])
                psi_r[rows, j] = np.where(q_psi[j] > 0, psi / q_psi[j], np.nan)
            train_n = np.isfinite(ref_r.mean) * float(n)
            shift = shift_statistic(ref_r.mean, ref_r.long_run_var, train_n, live.mean,
                                    live.count)  # fmt: skip
            shift_r[rows] = np.where(q_shift > 0, shift / q_shift, np.nan)
    return Calibration(_scale(psi_r, alpha, plan.power), _scale(shift_r, alpha, plan.power),
                       plan.replicates, plan.windows)  # fmt: skip
