"""Pair-feature speed on N bars of a pair (default 1,000,000): compiled batch vs a plain pandas
version in the same run (and their agreement), streaming update latency, peak memory.

The batch runs as a two-thread pipeline; its one-thread form (the same passes) is timed too.
Times are the best of several runs after an untimed one; the batch's median is reported too.

Run: .venv/bin/python benchmarks/bench_features.py [--bars N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlcore.config import load_config
from mlcore.features import (
    PAIR_FEATURES,
    PairFeatureEngine,
    pair_batch_values,
    reference_pair_features,
)

REPO = Path(__file__).resolve().parents[1]
COLS = ["high_a", "low_a", "close_a", "high_b", "low_b", "close_b"]


def _bars(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lb = np.cumsum(rng.normal(0, 0.002, n))
    la = 0.8 * lb + np.cumsum(rng.normal(0, 0.0005, n)) * 0.2
    ca, cb = np.exp(la + 3.0), np.exp(lb + 2.0)
    wick = np.abs(rng.normal(0, 0.0007, (4, n)))
    return np.column_stack(
        [ca * (1 + wick[0]), ca * (1 - wick[1]), ca, cb * (1 + wick[2]), cb * (1 - wick[3]), cb]
    )


def _timed(fn, repeat: int) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    """Best and median wall time of ``repeat`` runs after one untimed run (compilation, first
    touch of the allocator's memory), and the last result."""
    out = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--stream-bars", type=int, default=100_000)
    args = ap.parse_args()
    w = load_config(REPO / "configs", "dev").features.pair
    bars = _bars(args.bars, 1)
    t_batch, t_batch_med, got = _timed(lambda: pair_batch_values(bars, w), 7)
    t_serial, _, _ = _timed(lambda: pair_batch_values(bars, w, threads=1), 3)
    frame = pd.DataFrame(bars, columns=COLS)
    t_pandas, _, ref = _timed(lambda: reference_pair_features(frame, w), 3)
    ref_values = ref[list(PAIR_FEATURES)].to_numpy()  # type: ignore[union-attr]
    same_nan = bool((np.isnan(got) == np.isnan(ref_values)).all())  # type: ignore[arg-type]
    rel = np.abs(got - ref_values) / np.maximum(1.0, np.abs(ref_values))  # type: ignore[operator]
    engine = PairFeatureEngine(w)
    engine.warm(bars[:5000])
    lat = np.empty(args.stream_bars, dtype=np.int64)
    for i in range(args.stream_bars):
        row = tuple(bars[5000 + i])
        t0 = time.perf_counter_ns()
        engine.update(row)
        lat[i] = time.perf_counter_ns() - t0
    print(
        json.dumps(
            {
                "bars": args.bars,
                "features": len(PAIR_FEATURES),
                "batch_s": round(t_batch, 4),
                "batch_median_s": round(t_batch_med, 4),
                "batch_M_pair_bars_per_s": round(args.bars / t_batch / 1e6, 2),
                "batch_one_thread_s": round(t_serial, 4),
                "pandas_s": round(t_pandas, 4),
                "speedup_vs_pandas": round(t_pandas / t_batch, 2),
                "equal_to_pandas_nan_pattern": same_nan,
                "max_rel_diff_vs_pandas": float(np.nanmax(rel)),
                "stream_update_p50_us": round(float(np.percentile(lat, 50)) / 1e3, 2),
                "stream_update_p99_us": round(float(np.percentile(lat, 99)) / 1e3, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
