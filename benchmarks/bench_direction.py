"""The direction ensemble: training time of one level (5-fold purged CV, final fit, one canary
shuffle) on N bars x 33 features, peak memory, and one row through the stored ensemble
(native LightGBM + XGBoost boosters and the compiled forest walk), p50/p99 — both the bare
``DirectionEnsemble.predict_proba`` on a numpy row and ``DirectionModel.predict`` on a one-row
DataFrame (level choice and counters included).

Run: .venv/bin/python benchmarks/bench_direction.py [--rows N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlcore.models import DirectionModel
from mlcore.training import DirectionTrainConfig, train_direction

N_FEATURES = 33


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--predict-rows", type=int, default=5_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, N_FEATURES))
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(scale=1.0, size=args.rows)
    y = np.digitize(score, [-0.7, 0.7])
    t0 = np.arange(args.rows, dtype=np.int64)
    names = [f"f{i}" for i in range(N_FEATURES)]
    start = time.perf_counter()
    result = train_direction(X, y, t0, t0 + 12, DirectionTrainConfig(), 2, names)
    took = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = result.files()
        for name, body in files.items():
            (folder / name).write_bytes(body)
        sums = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
        (folder / "checksums.json").write_text(json.dumps(sums))
        model = DirectionModel.load(folder)
    ens = model.levels[2]
    rows = rng.normal(size=(args.predict_rows, N_FEATURES))
    frames = [pd.DataFrame(rows[i : i + 1], columns=names) for i in range(len(rows))]
    for i in range(200):  # warm-up: compile, caches
        ens.predict_proba(rows[i : i + 1])
        model.predict(frames[i])
    bare = np.empty(len(rows))
    framed = np.empty(len(rows))
    for i in range(len(rows)):
        s = time.perf_counter_ns()
        ens.predict_proba(rows[i : i + 1])
        bare[i] = time.perf_counter_ns() - s
        s = time.perf_counter_ns()
        model.predict(frames[i])
        framed[i] = time.perf_counter_ns() - s
    m = result.metrics
    print(
        json.dumps(
            {
                "rows": args.rows,
                "train_one_level_s": round(took, 1),
                "oos_auc": round(m["oos"]["auc"], 3),
                "canary_auc": round(m["canary"]["auc_mean"], 3),
                "best_iteration": m["best_iteration"],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "one_row_ensemble_p50_us": round(float(np.percentile(bare, 50)) / 1e3, 1),
                "one_row_ensemble_p99_us": round(float(np.percentile(bare, 99)) / 1e3, 1),
                "one_row_model_predict_p50_us": round(float(np.percentile(framed, 50)) / 1e3, 1),
                "one_row_model_predict_p99_us": round(float(np.percentile(framed, 99)) / 1e3, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
