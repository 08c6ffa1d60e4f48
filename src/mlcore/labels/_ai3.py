"""AI3 position-scale targets from the realised, risk-adjusted outcome of each AI1 event.

For a labelled AI1 event (neither excluded nor censored) with direction ``s``, entry bar ``t0``
and exit bar ``t1``::

    z0      = z[t0]
    z_exit  = z[t1]
    pnl_z   = s * (z0 - z_exit)                                # > 0 when the spread reverted
    mae_z   = max(0, max_{t0 < k <= t1} s * (z[k] - z0))      # worst adverse move
    target  = clip(pnl_z / ((|z0| - exit_z) + mae_z), 0, 1)

The denominator is the full planned reversion (entry to the exit band) plus the worst adverse
excursion, so a clean reversion to the band scores 1, a path that first ran against the position
scores less, and a failed event (label 0) scores its partial reversion or 0. Excluded and
censored events get NaN; so does an event whose ``z[t1]`` is NaN. NaN values of ``z`` strictly
inside the window are skipped by the ``mae_z`` maximum.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlcore.config import AI1LabelPolicy
from mlcore.labels._validate import BoolArray, FloatArray, IntArray, as_float

_REQUIRED = ("t0", "t1", "direction", "excluded", "censored")
_CHUNK_CELLS = 1 << 20  # caps each (events x horizon) scratch matrix at ~8 MB


def _max_adverse(
    z: FloatArray, t0: IntArray, t1: IntArray, side: FloatArray, horizon: int
) -> FloatArray:
    """Return ``max(0, max_{t0<k<=t1} side * (z[k] - z[t0]))`` per event, NaN-skipping."""
    out = np.zeros(len(t0), dtype=np.float64)
    offsets = np.arange(1, horizon + 1, dtype=np.int64)
    step = max(1, _CHUNK_CELLS // horizon)
    for start in range(0, len(t0), step):
        sl = slice(start, start + step)
        k = t0[sl, None] + offsets[None, :]
        inside = k <= t1[sl, None]
        moves = side[sl, None] * (z[np.minimum(k, len(z) - 1)] - z[t0[sl], None])
        moves = np.where(inside & np.isfinite(moves), moves, 0.0)
        out[sl] = moves.max(axis=1, initial=0.0)
    return out


def _event_arrays(events: pd.DataFrame, n: int) -> tuple[BoolArray, IntArray, IntArray, FloatArray]:
    """Return (labelled mask, t0, t1, direction of the labelled), checked against ``len(z)``."""
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(f"events lacks the columns {missing}")
    labelled = ~(events["excluded"].to_numpy(bool) | events["censored"].to_numpy(bool))
    t0 = events["t0"].to_numpy(np.int64)[labelled]
    t1 = events["t1"].to_numpy(np.int64)[labelled]
    bad = np.flatnonzero((t0 < 0) | (t1 <= t0) | (t1 >= n))
    if bad.size:
        i = int(np.flatnonzero(labelled)[bad[0]])
        raise ValueError(f"events row {i} has t0/t1 outside z (len {n}) or t1 <= t0")
    return labelled, t0, t1, events["direction"].to_numpy(np.float64)[labelled]


def ai3_targets(events: pd.DataFrame, z: npt.ArrayLike, policy: AI1LabelPolicy) -> FloatArray:
    """Return the AI3 position-scale target in [0, 1] per event (NaN when unlabelled).

    Parameters
    ----------
    events : pandas.DataFrame
        The output of :func:`ai1_events` on the same ``z`` (columns ``t0``, ``t1``,
        ``direction``, ``excluded``, ``censored`` are used).
    z : array of float
        The standardised spread the events were found on.
    policy : AI1LabelPolicy
        Its ``exit_z`` sets the planned reversion ``|z0| - exit_z``.

    Returns
    -------
    numpy.ndarray of float64
        Aligned with the rows of ``events``; the definition is in the module docstring.

    Examples
    --------
    >>> from mlcore.config import AI1LabelPolicy
    >>> from mlcore.labels import ai1_events
    >>> p = AI1LabelPolicy(entry_z=2.0, exit_z=0.5, horizon_bars=3, max_dz_ema=0.12)
    >>> z = [0.0, 2.5, 3.0, 0.5]
    >>> ai3_targets(ai1_events([0, 1, 2, 3], z, [0.0] * 4, p), z, p).tolist()
    [0.8]
    """
    z_arr = as_float("z", z)
    labelled, t0, t1, side = _event_arrays(events, len(z_arr))
    z0 = z_arr[t0]
    pnl = side * (z0 - z_arr[t1])
    mae = _max_adverse(z_arr, t0, t1, side, int((t1 - t0).max(initial=1)))
    target = np.clip(pnl / ((np.abs(z0) - policy.exit_z) + mae), 0.0, 1.0)
    out = np.full(len(events), np.nan, dtype=np.float64)
    out[labelled] = target
    return out
