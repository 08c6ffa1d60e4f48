"""3-class direction labels (spec 003): SELL / HOLD / BUY by the forward simple return.

``r_t = close[t + horizon_bars] / close[t] - 1``; ``r_t > threshold`` is BUY, ``r_t < -threshold``
is SELL, anything else HOLD. A return equal to the threshold is HOLD: returns within
``_TIE_TOL`` (1e-12) of ``+-threshold`` count as ties, so a move of exactly 0.5% stays HOLD
whatever floating-point noise the division adds. The last ``horizon_bars`` bars, and bars whose
``close`` at ``t`` or ``t + horizon_bars`` is NaN, get ``-1`` and ``t1 = -1``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from mlcore.config import DirectionLabelPolicy
from mlcore.labels._validate import NO_LABEL, Int8Array, IntArray, as_float

SELL: Final = 0
HOLD: Final = 1
BUY: Final = 2
_TIE_TOL = 1e-12


def direction_labels(
    close: npt.ArrayLike, policy: DirectionLabelPolicy
) -> tuple[Int8Array, IntArray]:
    """Label each bar SELL (0), HOLD (1) or BUY (2) from the return over ``horizon_bars``.

    Parameters
    ----------
    close : array of float
        Close prices, > 0; leading NaN allowed, +-inf or a non-positive price raises
        ``ValueError``.
    policy : DirectionLabelPolicy
        ``threshold`` (a fraction: 0.005 is 0.5%) and ``horizon_bars``.

    Returns
    -------
    label : numpy.ndarray of int8
        ``SELL``, ``HOLD``, ``BUY``, or -1 where the forward close is unknown.
    t1 : numpy.ndarray of int64
        ``t + horizon_bars``, or -1 where ``label`` is -1.

    Examples
    --------
    >>> from mlcore.config import DirectionLabelPolicy
    >>> p = DirectionLabelPolicy(threshold=0.005, horizon_bars=1)
    >>> direction_labels([100.0, 101.0, 100.0, 100.5], p)[0].tolist()
    [2, 0, 1, -1]
    """
    px = as_float("close", close)
    bad = np.flatnonzero(px <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"close must be > 0, got {px[i]!r} at index {i}")
    n = len(px)
    h = policy.horizon_bars
    label = np.full(n, NO_LABEL, dtype=np.int8)
    t1 = np.full(n, NO_LABEL, dtype=np.int64)
    if n <= h:
        return label, t1
    ret = px[h:] / px[:-h] - 1.0
    known = np.isfinite(ret)
    cls = np.full(n - h, HOLD, dtype=np.int8)
    cls[ret > policy.threshold + _TIE_TOL] = BUY
    cls[ret < -policy.threshold - _TIE_TOL] = SELL
    label[: n - h] = np.where(known, cls, NO_LABEL)
    t1[: n - h] = np.where(known, np.arange(h, n, dtype=np.int64), NO_LABEL)
    return label, t1
