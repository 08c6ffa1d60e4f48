"""AI2 risk labels (spec 002, ラベリング仕様), looking forward from each bar.

``label_t = 1`` when at some bar ``k`` in ``(t, t + horizon_bars]`` any of
``rho_var_k > rho_var_max``, ``atr_ratio_k > atr_ratio_max``, ``dz_abs_ema_k > dz_ema_max`` or
``dd_recent_k > dd_recent_max`` holds, else ``0``; ``t1 = t + horizon_bars``. The window is
strictly forward: a condition at ``t`` itself does not label ``t``. A NaN input at ``k`` counts as
"condition false"; a bar whose whole window has no finite input at all gets ``-1``, and so do the
last ``horizon_bars`` bars, whose window runs past the data. Wherever the label is ``-1``, ``t1``
is ``-1`` too.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mlcore.config import AI2LabelPolicy
from mlcore.labels._validate import (
    NO_LABEL,
    Int8Array,
    IntArray,
    as_float,
    check_lengths,
    forward_count,
)


def ai2_labels(
    rho_var: npt.ArrayLike,
    atr_ratio: npt.ArrayLike,
    dz_abs_ema: npt.ArrayLike,
    dd_recent: npt.ArrayLike,
    policy: AI2LabelPolicy,
) -> tuple[Int8Array, IntArray]:
    """Label each bar 1 when a risk condition occurs within the next ``horizon_bars`` bars.

    Parameters
    ----------
    rho_var, atr_ratio, dz_abs_ema, dd_recent : array of float
        Bar-aligned risk features; NaN allowed (condition false), +-inf raises ``ValueError``.
    policy : AI2LabelPolicy
        The four thresholds (each compared with ``>``) and ``horizon_bars``.

    Returns
    -------
    label : numpy.ndarray of int8
        1 (risk ahead), 0, or -1 (unknown: window past the data or entirely NaN).
    t1 : numpy.ndarray of int64
        ``t + horizon_bars`` (the last bar of the window), or -1 where ``label`` is -1.

    Examples
    --------
    >>> from mlcore.config import AI2LabelPolicy
    >>> p = AI2LabelPolicy(rho_var_max=0.025, atr_ratio_max=1.8, dz_ema_max=0.12,
    ...                    dd_recent_max=0.07, horizon_bars=2, class_weight_cap=5.0)
    >>> label, t1 = ai2_labels([0.0] * 5, [1.0, 1.0, 2.0, 1.0, 1.0], [0.0] * 5, [0.0] * 5, p)
    >>> label.tolist(), t1.tolist()
    ([1, 1, 0, -1, -1], [2, 3, 4, -1, -1])
    """
    arrays = {
        "rho_var": as_float("rho_var", rho_var),
        "atr_ratio": as_float("atr_ratio", atr_ratio),
        "dz_abs_ema": as_float("dz_abs_ema", dz_abs_ema),
        "dd_recent": as_float("dd_recent", dd_recent),
    }
    n = check_lengths(**arrays)
    limits = {
        "rho_var": policy.rho_var_max,
        "atr_ratio": policy.atr_ratio_max,
        "dz_abs_ema": policy.dz_ema_max,
        "dd_recent": policy.dd_recent_max,
    }
    risky = np.zeros(n, dtype=np.bool_)
    observed = np.zeros(n, dtype=np.bool_)
    with np.errstate(invalid="ignore"):
        for name, values in arrays.items():
            risky |= values > limits[name]
            observed |= np.isfinite(values)

    horizon = policy.horizon_bars
    t = np.arange(n, dtype=np.int64)
    known = (t + horizon <= n - 1) & (forward_count(observed, horizon) > 0)
    label = np.where(known, (forward_count(risky, horizon) > 0).astype(np.int8), NO_LABEL)
    t1 = np.where(known, t + horizon, NO_LABEL)
    return label.astype(np.int8), t1.astype(np.int64)


def ai2_class_weights(labels: npt.ArrayLike, cap: float) -> dict[int, float]:
    """Return balanced class weights with the largest / smallest ratio capped at ``cap``.

    Balanced means ``n_labelled / (n_classes * n_c)`` per class ``c`` (scikit-learn's rule);
    negative labels (-1, unknown) are ignored. The smallest weight is kept and every other
    weight is lowered to at most ``cap`` times it, so the ratio never exceeds ``cap`` (spec:
    class_weight 上限 1:5).

    Examples
    --------
    >>> ai2_class_weights([0] * 90 + [1] * 10 + [-1] * 5, cap=5.0)
    {0: 0.5555555555555556, 1: 2.7777777777777777}
    """
    if not np.isfinite(cap) or cap < 1.0:
        raise ValueError(f"cap must be a finite ratio >= 1, got {cap!r}")
    arr = np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    classes, counts = np.unique(arr[arr >= 0], return_counts=True)
    if classes.size == 0:
        raise ValueError("labels has no labelled bar (all are -1)")
    weights = counts.sum() / (classes.size * counts)
    weights = np.minimum(weights, cap * weights.min())
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}
