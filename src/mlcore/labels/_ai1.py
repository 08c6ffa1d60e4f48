"""AI1 reversion events (spec 002, ラベリング仕様).

An event opens at bar ``t`` when ``|z_t| >= entry_z`` and the spread has just entered the band:
``t`` is the first bar with finite ``z``, or ``|z_{t-1}| < entry_z`` (NaN counts as outside), or
``sign(z_t) != sign(z_{t-1})``. A long excursion opens one event, a re-entry opens another, and
events may overlap. ``direction = sign(z_t)`` (+1: spread above its mean, expected to fall).

- ``dz_abs_ema_t > max_dz_ema``: the event is returned with ``excluded=True`` and ``label=-1``
  (too fast to trade; kept so callers can count exclusions).
- ``label=1`` when some ``k`` in ``(t, t + horizon_bars]`` has ``|z_k| <= exit_z``; ``t1`` is the
  first such ``k``.
- ``label=0`` when that does not happen and bar ``t + horizon_bars`` exists; ``t1 = t +
  horizon_bars``.
- otherwise the data end first: ``censored=True``, ``label=-1``.

A bar whose ``z`` or ``dz_abs_ema`` is NaN (warm-up) never opens an event; a NaN ``z`` inside a
window never counts as a reversion. Unlabelled events (excluded or censored) carry ``t1=-1``,
``t1_ts`` = the int64 NaT sentinel, ``bars_held=-1`` and ``z1=NaN``. Every labelled event has
``t1 - t0 <= horizon_bars``, which purging relies on.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlcore.config import AI1LabelPolicy
from mlcore.labels._validate import (
    NO_LABEL,
    BoolArray,
    FloatArray,
    Int8Array,
    IntArray,
    as_float,
    as_ts,
    check_lengths,
    next_true,
)

NAT_NS = np.iinfo(np.int64).min
EVENT_COLUMNS = (
    "t0",
    "t1",
    "t0_ts",
    "t1_ts",
    "direction",
    "z0",
    "z1",
    "label",
    "bars_held",
    "excluded",
    "censored",
)


def _event_starts(z: FloatArray, dz_abs_ema: FloatArray, entry_z: float) -> IntArray:
    """Return the bars where z enters the band (from outside, from NaN, or across zero)."""
    with np.errstate(invalid="ignore"):
        in_band = np.abs(z) >= entry_z
    sign = np.sign(z)
    prev_in = np.zeros_like(in_band)
    prev_in[1:] = in_band[:-1]
    prev_sign = np.zeros_like(sign)
    prev_sign[1:] = sign[:-1]
    entering = ~prev_in | (sign != prev_sign)
    return np.flatnonzero(in_band & entering & np.isfinite(dz_abs_ema)).astype(np.int64)


def _outcomes(
    t0: IntArray, z: FloatArray, policy: AI1LabelPolicy
) -> tuple[Int8Array, IntArray, BoolArray]:
    """Return (label, t1, censored) for events opened at ``t0``, ignoring exclusion."""
    n = len(z)
    horizon = policy.horizon_bars
    with np.errstate(invalid="ignore"):
        reached = np.abs(z) <= policy.exit_z
    first_reach = next_true(reached)[t0 + 1]
    hit = (first_reach < n) & (first_reach <= t0 + horizon)
    full = t0 + horizon <= n - 1
    label = np.where(hit, 1, np.where(full, 0, NO_LABEL)).astype(np.int8)
    t1 = np.where(hit, first_reach, np.where(full, t0 + horizon, NO_LABEL)).astype(np.int64)
    return label, t1, ~hit & ~full


def ai1_events(
    ts: npt.ArrayLike,
    z: npt.ArrayLike,
    dz_abs_ema: npt.ArrayLike,
    policy: AI1LabelPolicy,
) -> pd.DataFrame:
    """Find AI1 reversion events and label them (see the module docstring for the rule).

    Parameters
    ----------
    ts : array of int64
        Bar timestamps in nanoseconds UTC, strictly increasing (``datetime64`` is accepted).
    z : array of float
        Standardised spread; leading NaN (warm-up) allowed, +-inf raises ``ValueError``.
    dz_abs_ema : array of float
        EMA of ``|dz|``, the speed filter; same NaN / inf rules.
    policy : AI1LabelPolicy
        ``entry_z``, ``exit_z``, ``horizon_bars`` and ``max_dz_ema``.

    Returns
    -------
    pandas.DataFrame
        One row per event, ordered by ``t0``, with columns ``t0``, ``t1`` (bar indices),
        ``t0_ts``, ``t1_ts`` (int64 ns), ``direction`` (int8, +-1), ``z0``, ``z1`` (z at t0 and
        t1), ``label`` (int8: 1, 0, or -1 for no label), ``bars_held`` (``t1 - t0``),
        ``excluded`` and ``censored``. Unlabelled events keep ``t1 = bars_held = -1``.

    Examples
    --------
    >>> from mlcore.config import AI1LabelPolicy
    >>> p = AI1LabelPolicy(entry_z=2.0, exit_z=0.5, horizon_bars=3, max_dz_ema=0.12)
    >>> ev = ai1_events([0, 1, 2, 3], [0.1, 2.4, 1.0, 0.3], [0.0] * 4, p)
    >>> ev[["t0", "t1", "label"]].to_numpy().tolist()
    [[1, 3, 1]]
    """
    ts_arr = as_ts("ts", ts)
    z_arr = as_float("z", z)
    dz_arr = as_float("dz_abs_ema", dz_abs_ema)
    check_lengths(ts=ts_arr, z=z_arr, dz_abs_ema=dz_arr)

    t0 = _event_starts(z_arr, dz_arr, policy.entry_z)
    label, t1, censored = _outcomes(t0, z_arr, policy)
    excluded = dz_arr[t0] > policy.max_dz_ema
    label[excluded] = NO_LABEL
    t1[excluded] = NO_LABEL
    censored &= ~excluded
    labelled = t1 >= 0
    safe_t1 = np.where(labelled, t1, 0)
    return pd.DataFrame(
        {
            "t0": t0,
            "t1": t1,
            "t0_ts": ts_arr[t0],
            "t1_ts": np.where(labelled, ts_arr[safe_t1], NAT_NS),
            "direction": np.sign(z_arr[t0]).astype(np.int8),
            "z0": z_arr[t0],
            "z1": np.where(labelled, z_arr[safe_t1], np.nan),
            "label": label,
            "bars_held": np.where(labelled, t1 - t0, NO_LABEL),
            "excluded": excluded,
            "censored": censored,
        },
        columns=list(EVENT_COLUMNS),
    )
