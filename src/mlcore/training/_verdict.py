"""Is a fitted model usable? Degenerate models block the run; weak ones warn.

Blocks (``retrain_status=blocked``, the version is registered as rejected):

- **no split**: every tree of the booster is a single leaf, so the model answers the base rate
  whatever the features say;
- **constant output**: the calibrated probability (AI3: the prediction) on the test part takes
  one value on every row, so no threshold can select anything.

Warnings (``retrain_status=weak``, not ``ok``; whether the version earns its place is the
adoption gates' job, and the publish checklist's notes name the warnings):

- **CV AUC within noise of 0.5** (or below it beyond noise: a score ranking the wrong way):
  the out-of-fold AUC is less than two null standard errors above 0.5 (Hanley & McNeil
  1982, the AUC's variance when the classes are not separable:
  ``(n_pos + n_neg + 1) / (12 n_pos n_neg)``);
- **calibration worsens log loss**: on the test part, calibrated log loss exceeds raw by more
  than ``CALIBRATION_TOLERANCE`` (relative).

Each message names the figure and what to try; the caller prefixes the model's name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HINT = "try more history, the timeframe's label policy (core_policy.yaml labels), or fewer features"
NOISE_SE = 2.0  # AUCs closer to 0.5 than this many null standard errors are noise
CALIBRATION_TOLERANCE = 0.01  # relative log-loss worsening tolerated from calibration


@dataclass(frozen=True)
class Verdict:
    """Why a model may not be used (``blocks``) or should not be trusted as is (``warnings``)."""

    blocks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def split_trees(model: Any) -> int:
    """How many trees of a fitted LightGBM or XGBoost model split at least once."""
    booster = getattr(model, "booster_", None)
    if booster is not None:  # LightGBM
        return sum(1 for t in booster.dump_model()["tree_info"] if t["num_leaves"] > 1)
    trees = model.get_booster().get_dump(dump_format="json")
    return sum(1 for t in trees if "children" in json.loads(t))


def auc_null_se(n_pos: int, n_neg: int) -> float:
    """Standard error of the AUC of a score unrelated to the labels (Hanley & McNeil)."""
    if n_pos <= 0 or n_neg <= 0:
        return math.inf
    return math.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))


def binary_verdict(
    model: Any, test_prob: np.ndarray, y_dev: np.ndarray, metrics: dict[str, Any]
) -> Verdict:
    """The verdict on one calibrated binary model (``metrics`` as ``train_binary`` writes
    them; ``y_dev``: the labels the out-of-fold AUC was measured on)."""
    blocks: list[str] = []
    warnings: list[str] = []
    if split_trees(model) == 0:
        rate = float(np.mean(y_dev)) if len(y_dev) else math.nan
        blocks.append(
            f"no split in any tree (one constant leaf: the base rate {rate:.3f} on every "
            f"row); {HINT}"
        )
    elif len(test_prob) and np.ptp(test_prob) == 0.0:
        blocks.append(
            f"constant output (calibrated probability {float(test_prob[0]):.3f} on all "
            f"{len(test_prob)} test rows); {HINT}"
        )
    auc = metrics["cv_out_of_fold"].get("auc")
    n_pos = int(np.sum(y_dev))
    se = auc_null_se(n_pos, len(y_dev) - n_pos)
    if auc is not None and not blocks and auc - 0.5 < NOISE_SE * se:
        # Below 0.5 beyond noise is no "noise": the score ranks the events the wrong way.
        where = (
            "below 0.5 beyond noise (the score ranks the events the wrong way)"
            if 0.5 - auc >= NOISE_SE * se
            else "within noise of 0.5"
        )
        warnings.append(
            f"CV AUC {auc:.3f} is {where} (2 standard errors = "
            f"{NOISE_SE * se:.3f} on {len(y_dev):,} events, {n_pos:,} positive); {HINT}"
        )
    raw = metrics["oos_raw"].get("logloss")
    cal = metrics["oos_calibrated"].get("logloss")
    if raw is not None and cal is not None and cal > raw * (1.0 + CALIBRATION_TOLERANCE):
        warnings.append(
            f"calibration worsens test log loss ({raw:.4f} raw, {cal:.4f} calibrated); "
            "the calibration part may be too small or unlike the test part"
        )
    return Verdict(blocks, warnings)


def regressor_verdict(model: Any, test_pred: np.ndarray) -> Verdict:
    """The verdict on a regressor (AI3): blocks only; its weakness shows in its metrics."""
    if split_trees(model) == 0:
        return Verdict([f"no split in any tree (one constant prediction); {HINT}"])
    if len(test_pred) and np.ptp(test_pred) == 0.0:
        return Verdict(
            [
                f"constant output ({float(test_pred[0]):.3f} on all {len(test_pred)} "
                f"test rows); {HINT}"
            ]
        )
    return Verdict()
