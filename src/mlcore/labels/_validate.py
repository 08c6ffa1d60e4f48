"""Input checks shared by the label kernels: 1-D, same length, no infinities, sorted time."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]

NO_LABEL = -1


def as_float(name: str, values: npt.ArrayLike) -> FloatArray:
    """Return ``values`` as 1-D float64; NaN is allowed, +-inf raises naming the first index."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    bad = np.flatnonzero(np.isinf(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} has a non-finite value {arr[i]!r} at index {i}")
    return arr


def as_ts(name: str, values: npt.ArrayLike) -> IntArray:
    """Return int64 nanosecond timestamps, checked 1-D and strictly increasing."""
    raw = np.asarray(values)
    if np.issubdtype(raw.dtype, np.datetime64):
        raw = raw.astype("datetime64[ns]").view(np.int64)
    if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"{name} must be 1-D int64 nanoseconds, got {raw.dtype} {raw.shape}")
    arr = raw.astype(np.int64, copy=False)
    bad = np.flatnonzero(np.diff(arr) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(f"{name} is not strictly increasing at index {i}")
    return arr


def check_lengths(**arrays: npt.NDArray[np.generic]) -> int:
    """Return the common length of ``arrays``; raise naming them when the lengths differ."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"arrays must have the same length, got {listed}")
    return next(iter(lengths.values()), 0)


def next_true(mask: BoolArray) -> IntArray:
    """Return, for each i, the smallest k >= i with ``mask[k]`` (``len(mask)`` if none).

    The result has one extra trailing entry (``len(mask)``) so ``out[i + 1]`` is always valid.
    """
    n = len(mask)
    idx = np.where(mask, np.arange(n, dtype=np.int64), np.int64(n))
    out = np.empty(n + 1, dtype=np.int64)
    out[n] = n
    out[:n] = np.minimum.accumulate(idx[::-1])[::-1]
    return out


def forward_count(mask: BoolArray, horizon: int) -> IntArray:
    """Return, for each t, how many k in (t, t + horizon] have ``mask[k]`` (clipped at the end)."""
    n = len(mask)
    csum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(mask, out=csum[1:])
    t = np.arange(n, dtype=np.int64)
    hi = np.minimum(t + horizon, n - 1) + 1
    counts: IntArray = csum[hi] - csum[t + 1]
    return counts
