"""Pair feature engines over the one compiled definition: batch over history, streaming per bar."""

from __future__ import annotations

import io
import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor

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
    front_masks,
    pair_back,
    pair_front,
    pair_run,
    params,
    resize_ring,
    ring_size,
    single_run,
    single_step,
    windows_array,
)

_LEG_COLS = ("high", "low", "close")
_BAR_FIELDS = "high_A, low_A, close_A, high_B, low_B, close_B"
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

    def _run(self, bars: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
        s = self._state
        if threads == 2 and len(bars) >= PIPELINE_MIN_BARS:
            self._state = _run_pipelined(s, self._wa, self._p, bars, out)
            return
        pair_run(
            bars, s["hist"], s["sums"], s["last_nan"], s["ema"], s["carry"], s["istate"],
            s["extremes"], self._wa, self._p, out,
        )  # fmt: skip

    def update(self, bar: tuple[float, float, float, float, float, float]) -> np.ndarray:
        """Add one aligned bar (high_A, low_A, close_A, high_B, low_B, close_B); return features."""
        # Plain-Python checks: NumPy calls on six values would cost microseconds. A sum of
        # positive values is finite only when none is NaN or infinite.
        if not (min(bar) > 0.0 and math.isfinite(sum(bar))):
            raise ValueError(f"bar {bar!r}: prices must be finite and positive ({_BAR_FIELDS})")
        self._bar[0] = bar
        self._run(self._bar, self._out)
        return self._out[:, 0].copy()

    def warm(self, bars: np.ndarray, threads: int = 2) -> np.ndarray:
        """Add many aligned bars (n x 6); return the n x features matrix.

        With ``threads=2`` a long history runs as a two-thread pipeline of the same passes
        (same results, bit for bit); ``threads=1`` keeps it on the calling thread.
        """
        if threads not in (1, 2):
            raise ValueError(f"threads must be 1 or 2, got {threads!r}")
        arr = np.ascontiguousarray(bars, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 6:
            raise ValueError(f"bars must be n x 6 ({_BAR_FIELDS}), got shape {arr.shape}")
        bad = ~(np.isfinite(arr) & (arr > 0)).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} bar(s) with NaN, inf or non-positive prices, first at row "
                f"{first}: {arr[first].tolist()} ({_BAR_FIELDS})"
            )
        # Allocated by NumPy, which asks the kernel for huge pages on large arrays.
        out = np.empty((N_PAIR, arr.shape[0]))
        self._run(arr, out, threads)
        return out.T

    def save(self) -> bytes:
        """The whole state as bytes (NumPy .npz, no pickle)."""
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, wa=self._wa, p=self._p, **self._state)
        return buf.getvalue()

    def dump(self) -> bytes:
        """The state as raw bytes in a fixed layout (for a live checkpoint: about 100 times
        faster than :meth:`save`; read back only by :meth:`undump` under the same windows)."""
        return b"".join(self._state[k].tobytes() for k in _STATE_KEYS)

    @classmethod
    def undump(cls, windows: PairFeatureWindows, data: bytes) -> PairFeatureEngine:
        """Restore an engine from :meth:`dump` bytes made under the same windows."""
        engine = cls(windows)
        layout = [(k, engine._state[k]) for k in _STATE_KEYS]
        size = sum(a.nbytes for _, a in layout)
        if len(data) != size:
            raise ValueError(
                f"pair-feature state of {len(data)} bytes; these windows need {size} bytes"
            )
        at = 0
        for k, a in layout:
            engine._state[k] = np.frombuffer(data, a.dtype, a.size, at).reshape(a.shape).copy()
            at += a.nbytes
        return engine

    @classmethod
    def load(cls, windows: PairFeatureWindows, data: bytes) -> PairFeatureEngine:
        """Restore an engine saved with :meth:`save` under the same windows."""
        engine = cls(windows)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if not (np.array_equal(z["wa"], engine._wa) and np.array_equal(z["p"], engine._p)):
                raise ValueError("saved pair-feature state was made with other windows")
            engine._state = {k: z[k].copy() for k in _STATE_KEYS}
        return engine


# Long inputs run as a two-thread pipeline over chunks of PIPELINE_CHUNK bars (the passes
# release the GIL): the front passes on chunk k while the back passes work on chunk k - 1.
PIPELINE_CHUNK = 16384
PIPELINE_MIN_BARS = 4 * PIPELINE_CHUNK
_SMALL_KEYS = ("sums", "last_nan", "ema", "carry", "istate")
_FRONT = front_masks()
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pair-features")
        return _POOL


def _padded_copy(a: np.ndarray) -> np.ndarray:
    """A copy with 64 bytes of padding on each side, so two threads' copies never share a cache
    line."""
    pad = 64 // a.itemsize
    buf = np.zeros(a.size + 2 * pad, dtype=a.dtype)
    view = buf[pad : pad + a.size].reshape(a.shape)
    view[...] = a
    return view


def _run_pipelined(
    state: dict[str, np.ndarray], wa: np.ndarray, p: np.ndarray, bars: np.ndarray, out: np.ndarray
) -> dict[str, np.ndarray]:
    """Run ``bars`` through the same passes as :func:`pair_run`, the front and the back on two
    threads; return the state after them (bit for bit what the serial run leaves)."""
    t_base = int(state["istate"][I_T])
    ring = ring_size(wa, 2 * PIPELINE_CHUNK)  # the front runs up to a chunk ahead of the back
    hist = resize_ring(state["hist"], t_base, ring)
    ext = state["extremes"].copy()
    fr = {k: _padded_copy(state[k]) for k in _SMALL_KEYS}
    bk = {k: _padded_copy(state[k]) for k in _SMALL_KEYS}

    def front(r0: int, r1: int) -> None:
        pair_front(
            bars, hist, fr["sums"], fr["last_nan"], fr["carry"], fr["istate"], wa, p, out,
            r0, r1, t_base + r0,
        )  # fmt: skip

    def back(r0: int, r1: int) -> None:
        pair_back(
            hist, bk["sums"], bk["last_nan"], bk["ema"], bk["carry"], bk["istate"], ext, wa, p,
            out, r0, r1, t_base + r0,
        )  # fmt: skip

    n = len(bars)
    chunks = [(r0, min(n, r0 + PIPELINE_CHUNK)) for r0 in range(0, n, PIPELINE_CHUNK)]
    front(*chunks[0])
    for prev, cur in itertools.pairwise(chunks):
        pending = _pool().submit(back, *prev)
        front(*cur)
        pending.result()
    back(*chunks[-1])
    merged = {k: np.where(_FRONT[k], fr[k], bk[k]) for k in _SMALL_KEYS}
    merged["istate"][I_T] = t_base + n
    merged["hist"] = resize_ring(hist, t_base + n, state["hist"].shape[1])
    merged["extremes"] = ext
    return merged


def pair_batch_values(
    bars: np.ndarray, windows: PairFeatureWindows, threads: int = 2
) -> np.ndarray:
    """Every pair feature for a whole aligned history (n x 6 array), from a fresh state."""
    return PairFeatureEngine(windows).warm(bars, threads)


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
