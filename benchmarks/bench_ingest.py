"""Ingestion speed and memory on N hourly bars of one symbol (default 1,000,000).

Run: .venv/bin/python benchmarks/bench_ingest.py [--bars N]
Prints one JSON object: seconds and bars/s per stage, partitions written, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlcore.config import load_config
from mlcore.data import expected_grid, ingest, parse_table, run_dq
from mlcore.data._ingest import _dedupe_incoming

REPO = Path(__file__).resolve().parents[1]


def _text_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("1910-01-01", periods=n, freq="h", tz="UTC")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.0005
    low = np.minimum(open_, close) * 0.9995
    return pd.DataFrame(
        {
            "Datetime": ts.strftime("%Y-%m-%d %H:%M:%S"),
            "Open": np.char.mod("%.6f", open_),
            "High": np.char.mod("%.6f", high),
            "Low": np.char.mod("%.6f", low),
            "Close": np.char.mod("%.6f", close),
            "Volume": np.char.mod("%d", rng.integers(1, 1000, n)),
        }
    )


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = args.bars
    frame = _text_frame(n, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ARCHIVE_PATH"] = tmp
        cfg = load_config(REPO / "configs", "dev")
        parsed, t_parse = _timed(lambda: parse_table(frame, origin="bench", timeframe="1h"))
        bars = parsed.bars
        unique, _, _ = _dedupe_incoming(bars)
        unique["conflict"] = unique["conflict"].astype(bool)
        cal = cfg.universe.calendars["crypto"]
        grid = expected_grid(cal, "1h", bars["ts"].iloc[0], bars["ts"].iloc[-1])
        _, t_dq = _timed(lambda: run_dq(unique, grid, cfg.pipeline.dq_thresholds))
        report, t_ingest = _timed(lambda: ingest(cfg, parsed, "BTC/USD", "1h"))
        again, t_again = _timed(lambda: ingest(cfg, parsed, "BTC/USD", "1h"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "bars": n,
                "parse_s": round(t_parse, 3),
                "parse_bars_per_s": round(n / t_parse),
                "dq_s": round(t_dq, 3),
                "dq_bars_per_s": round(n / t_dq),
                "ingest_s": round(t_ingest, 3),
                "ingest_bars_per_s": round(n / t_ingest),
                "partitions_written": len(report.canonical_partitions_written),
                "reingest_unchanged_s": round(t_again, 3),
                "reingest_partitions_written": len(again.canonical_partitions_written),
                "peak_rss_mb": round(peak_mb),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
