"""Pair feature engines over the one compiled definition: batch over history, streaming per bar."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from mlcore.config import PairFeatureWindows
from mlcore.features._kernels import (
    I_T,
    N_PAIR,
    N_SINGLE,
    PAIR_FEATURES,
    SINGLE_FEATURES,
    SINGLE_RING_WINDOWS,
    empty_single_state,
    empty_state,
    pair_run,
    params,
    single_run,
    single_step,
    windows_array,
)

_LEG_COLS = ("high", "low", "close")
_STATE_KEYS = ("hist", "sums", "last_nan", "ema", "carry", "istate", "extremes")


def longest_window(w: PairFeatureWindows) -> int:
    """Bars needed before every pair feature is defined (the warm-up)."""
    # z needs a full beta window of spreads; rho_var a full rho window of correlations; the
    # ATR ratio a full long window of ATRs; half-life a full window of spread changes.
    return max(
        w.beta_window + w.z_window,
        w.beta_window + w.half_life_window + 1,
        w.beta_window + w.atr_window + w.atr_long_window,
        w.rho_window + w.rho_var_window,
        w.beta_window + w.beta_stability_window,
        w.beta_window + w.dd_window,
        w.beta_window + w.slope_window,
    )


class PairFeatureEngine:
    """Streaming pair features: :meth:`update` costs O(1) per bar.

    The state can be saved with :meth:`save` and restored with :meth:`load`, so a worker that
    restarts continues exactly where it stopped. :meth:`warm` feeds a history through the same
    compiled step, and so does :func:`pair_batch_values`: the three agree bit for bit.
    """

    def __init__(self, windows: PairFeatureWindows) -> None:
        self.windows = windows
        self._wa = windows_array(windows)
        self._p = params(windows)
        self._state = empty_state(self._wa)
        self._out = np.empty((N_PAIR, 1))
        self._bar = np.empty((1, 6))

    @property
    def bars_seen(self) -> int:
        """Bars processed since the state was created."""
        return int(self._state["istate"][I_T])

    def _run(self, bars: np.ndarray, out: np.ndarray) -> None:
        s = self._state
        pair_run(
            bars, s["hist"], s["sums"], s["last_nan"], s["ema"], s["carry"], s["istate"],
            s["extremes"], self._wa, self._p, out,
        )  # fmt: skip

    def update(self, bar: tuple[float, float, float, float, float, float]) -> np.ndarray:
        """Add one aligned bar (high_A, low_A, close_A, high_B, low_B, close_B); return features."""
        self._bar[0] = bar
        self._run(self._bar, self._out)
        return self._out[:, 0].copy()

    def warm(self, bars: np.ndarray) -> np.ndarray:
        """Add many aligned bars (n x 6); return the n x features matrix."""
        arr = np.ascontiguousarray(bars, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 6:
            raise ValueError(f"bars must be n x 6, got shape {arr.shape}")
        # Allocated by NumPy, which asks the kernel for huge pages on large arrays.
        out = np.empty((N_PAIR, arr.shape[0]))
        self._run(arr, out)
        return out.T

    def save(self) -> bytes:
        """The whole state as bytes (NumPy .npz, no pickle)."""
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, wa=self._wa, p=self._p, **self._state)
        return buf.getvalue()

    @classmethod
    def load(cls, windows: PairFeatureWindows, data: bytes) -> PairFeatureEngine:
        """Restore an engine saved with :meth:`save` under the same windows."""
        engine = cls(windows)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if not (np.array_equal(z["wa"], engine._wa) and np.array_equal(z["p"], engine._p)):
                raise ValueError("saved pair-feature state was made with other windows")
            engine._state = {k: z[k].copy() for k in _STATE_KEYS}
        return engine


def pair_batch_values(bars: np.ndarray, windows: PairFeatureWindows) -> np.ndarray:
    """Every pair feature for a whole aligned history (n x 6 array), from a fresh state."""
    return PairFeatureEngine(windows).warm(bars)


def align_legs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Inner-join two legs on ``ts``; count the bars each leg had that the other lacked."""
    for name, leg in (("A", a), ("B", b)):
        missing = [c for c in ("ts", *_LEG_COLS) if c not in leg]
        if missing:
            raise ValueError(f"leg {name}: missing column(s) {missing}")
        vals = leg[list(_LEG_COLS)].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals).all(axis=1) | (vals <= 0).any(axis=1)
        if bad.any():
            first = leg["ts"].iloc[int(np.flatnonzero(bad)[0])]
            raise ValueError(
                f"leg {name}: {int(bad.sum())} bar(s) with NaN, inf or non-positive prices, "
                f"first at {first}"
            )
        if not leg["ts"].is_monotonic_increasing or leg["ts"].duplicated().any():
            raise ValueError(f"leg {name}: timestamps must be unique and increasing")
    cols = ["ts", *_LEG_COLS]
    joined = a[cols].merge(b[cols], on="ts", how="inner", suffixes=("_a", "_b"))
    if joined.empty:
        raise ValueError("legs do not overlap: no common timestamp")
    dropped = {"A": len(a) - len(joined), "B": len(b) - len(joined)}
    return joined.reset_index(drop=True), dropped


def pair_features(
    a: pd.DataFrame, b: pd.DataFrame, windows: PairFeatureWindows
) -> tuple[pd.DataFrame, dict[str, int]]:
    """All pair features in batch for two legs (columns ts, high, low, close).

    Returns a frame with ``ts`` and one column per feature (NaN during the warm-up of the
    first :func:`longest_window` bars), and the bars dropped from each leg by alignment.
    """
    joined, dropped = align_legs(a, b)
    need = longest_window(windows)
    if len(joined) < need:
        raise ValueError(
            f"pair history too short: {len(joined)} aligned bars, the windows need {need}"
        )
    bars = joined[["high_a", "low_a", "close_a", "high_b", "low_b", "close_b"]].to_numpy()
    values = pair_batch_values(bars, windows)
    frame = pd.DataFrame(values, columns=list(PAIR_FEATURES))
    frame.insert(0, "ts", joined["ts"].to_numpy())
    return frame, dropped


class SingleFeatureEngine:
    """Single-instrument features for one symbol: :meth:`update` per bar, :meth:`warm` for many.

    One compiled step is the definition; :func:`single_features` runs the same step over a
    history, so streaming and batch agree on every bar.
    """

    def __init__(self) -> None:
        self._state = empty_single_state()
        self._row = np.empty(N_SINGLE)
        self._bar = np.empty(5)

    def update(self, ts_ns: int, bar: tuple[float, float, float, float, float]) -> np.ndarray:
        """Add one bar (open, high, low, close, volume) stamped ``ts_ns`` (UTC ns)."""
        self._bar[:] = bar
        s = self._state
        single_step(
            self._bar, np.int64(ts_ns), s["buf"], s["meta"], s["sums"], SINGLE_RING_WINDOWS,
            s["ema"], s["sc"], self._row,
        )  # fmt: skip
        return self._row.copy()

    def warm(self, ts_ns: np.ndarray, bars: np.ndarray) -> np.ndarray:
        """Add many bars (n x 5) with their timestamps; return the n x features matrix."""
        s = self._state
        out: np.ndarray = single_run(
            np.ascontiguousarray(bars, dtype=np.float64), np.asarray(ts_ns, dtype=np.int64),
            s["buf"], s["meta"], s["sums"], SINGLE_RING_WINDOWS, s["ema"], s["sc"],
        )  # fmt: skip
        return out

    def save(self) -> bytes:
        """The whole state as bytes (NumPy .npz, no pickle)."""
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **self._state)
        return buf.getvalue()

    @classmethod
    def load(cls, data: bytes) -> SingleFeatureEngine:
        """Restore an engine saved with :meth:`save`."""
        engine = cls()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            engine._state = {k: z[k].copy() for k in engine._state}
        return engine


def single_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Single-instrument features of one symbol's bars (ts, open, high, low, close, volume)."""
    missing = [c for c in ("ts", "open", "high", "low", "close", "volume") if c not in bars]
    if missing:
        raise ValueError(f"bars: missing column(s) {missing}")
    vals = bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals).all(axis=1) | (vals[:, :4] <= 0).any(axis=1) | (vals[:, 4] < 0)
    if bad.any():
        first = bars["ts"].iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"{int(bad.sum())} bar(s) with NaN, inf or non-positive values, first at {first}"
        )
    if not bars["ts"].is_monotonic_increasing or bars["ts"].duplicated().any():
        raise ValueError("bars: timestamps must be unique and increasing")
    ts = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
    out = SingleFeatureEngine().warm(ts, vals)
    frame = pd.DataFrame(out, columns=list(SINGLE_FEATURES))
    frame.insert(0, "ts", bars["ts"].to_numpy())
    return frame
