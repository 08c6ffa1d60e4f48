"""The leakage canary's control target: labels shuffled within blocks of bars.

Shuffling within blocks keeps each block's label rate (slow regimes survive) while breaking
every link between a sample's features and its own label, so an honest pipeline scores a
ROC AUC of 0.5 on it out of sample; a clearly higher score means the pipeline lets labels leak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def permute_within_blocks(
    y: ArrayLike, t0: ArrayLike, block_bars: int, rng: np.random.Generator
) -> np.ndarray:
    """``y`` shuffled among the samples whose bar ``t0`` falls in the same block of bars."""
    y_arr = np.asarray(y)
    t_arr = np.asarray(t0, dtype=np.int64)
    if y_arr.shape != t_arr.shape or y_arr.ndim != 1:
        raise ValueError(
            f"y and t0 must be 1-D of the same length, got {y_arr.shape}, {t_arr.shape}"
        )
    if block_bars < 1:
        raise ValueError(f"block_bars must be >= 1, got {block_bars}")
    out = y_arr.copy()
    block = (t_arr - t_arr.min()) // block_bars
    for b in np.unique(block):
        idx = np.flatnonzero(block == b)
        out[idx] = y_arr[rng.permutation(idx)]
    return out


# (control labels of every sample, block number of each development sample) -> AUC or None
ControlScore = Callable[[np.ndarray, np.ndarray], float | None]


def run_canary(
    y: np.ndarray, t0: np.ndarray, dev: np.ndarray, block_bars: int, repeats: int,
    tolerance: float, seed: int, score: ControlScore, statistic: str,
) -> dict[str, Any]:  # fmt: skip
    """Score ``repeats`` seeded controls (the development labels shuffled within blocks) with
    ``score``; the canary passes when their mean AUC is within 0.5 +- ``tolerance``."""
    rng = np.random.default_rng(seed)
    block = (t0[dev] - t0[dev].min()) // block_bars
    aucs = []
    for _ in range(repeats):
        y_ctl = y.copy()
        y_ctl[dev] = permute_within_blocks(y[dev], t0[dev], block_bars, rng)
        auc = score(y_ctl, block)
        if auc is not None:
            aucs.append(auc)
    mean = float(np.mean(aucs)) if aucs else float("nan")
    return {
        "control": f"labels shuffled within blocks of {block_bars} bars",
        "statistic": statistic,
        "aucs": aucs,
        "auc_mean": mean,
        "tolerance": tolerance,
        "passed": bool(abs(mean - 0.5) <= tolerance),
    }
