"""Training and inference speed: AI1 and AI2 (LightGBM, 5-fold purged CV, early stopping, final
fit and isotonic calibration) on N rows x 20 features, wall time and peak memory; then the hot
path: one row through the native boosters of AI1, AI2 and AI3 (``Booster.predict``, never the
scikit-learn wrapper) plus the calibration maps, p50/p99.

The leakage canary repeats the CV on shuffled labels, so it multiplies the CV cost by its
repeats; it is timed separately, once, on a tenth of the rows.

Run: .venv/bin/python benchmarks/bench_training.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import lightgbm as lgb
import numpy as np

from mlcore.training import BinaryTrainConfig, train_binary
from mlcore.training._regress import train_regressor


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20)).astype(np.float64)
    logit = X[:, 0] - 0.7 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3] + 0.3 * np.sin(X[:, 4])
    p = 1 / (1 + np.exp(-logit))
    y1 = (rng.uniform(size=n) < p).astype(np.int64)
    y2 = (rng.uniform(size=n) < 0.3 * p).astype(np.int64)
    y3 = np.clip(p + rng.normal(0, 0.1, n), 0, 1)
    t0 = np.arange(n, dtype=np.int64)
    return X, y1, y2, y3, t0


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--predict-rows", type=int, default=20_000)
    args = ap.parse_args()
    X, y1, y2, y3, t0 = _data(args.rows, 0)
    t1 = t0 + 24
    cfg = BinaryTrainConfig(canary_repeats=0, seed=7)
    t_ai1, ai1 = _timed(lambda: train_binary(X, y1, t0, t1, cfg))
    weights = {0: 1.0, 1: min(5.0, float((y2 == 0).sum() / max(1, (y2 == 1).sum())))}
    t_ai2, ai2 = _timed(
        lambda: train_binary(
            X, y2, t0, t1, BinaryTrainConfig(canary_repeats=0, seed=7, class_weight=weights)
        )
    )
    t_ai3, ai3 = _timed(lambda: train_regressor(X, y3, t0, t1, cfg))
    tenth = args.rows // 10
    t_canary, _ = _timed(
        lambda: train_binary(
            X[:tenth],
            y1[:tenth],
            t0[:tenth],
            t1[:tenth],
            BinaryTrainConfig(canary_repeats=1, seed=7),
        )
    )
    t_no_canary, _ = _timed(
        lambda: train_binary(X[:tenth], y1[:tenth], t0[:tenth], t1[:tenth], cfg)
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    boosters = [
        lgb.Booster(model_str=m.booster_.model_to_string())
        for m in (ai1.model, ai2.model, ai3.model)
    ]
    cal1, cal2 = ai1.calibrator, ai2.calibrator
    rows = X[: args.predict_rows]
    lat = np.empty(len(rows), dtype=np.int64)
    for i in range(len(rows)):
        row = rows[i : i + 1]
        s = time.perf_counter_ns()
        p1 = cal1.predict(boosters[0].predict(row, raw_score=True))
        p2 = cal2.predict(boosters[1].predict(row, raw_score=True))
        p3 = np.clip(boosters[2].predict(row), 0.0, 1.0)
        lat[i] = time.perf_counter_ns() - s
    assert p1.shape == p2.shape == p3.shape == (1,)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "features": X.shape[1],
                "ai1_train_cv_calibrate_s": round(t_ai1, 1),
                "ai1_best_iteration": ai1.metrics["best_iteration"],
                "ai1_oos_auc": round(ai1.metrics["oos_calibrated"]["auc"], 4),
                "ai2_train_cv_calibrate_s": round(t_ai2, 1),
                "ai2_best_iteration": ai2.metrics["best_iteration"],
                "ai3_train_cv_s": round(t_ai3, 1),
                "canary_one_repeat_on_tenth_s": round(t_canary - t_no_canary, 1),
                "train_on_tenth_without_canary_s": round(t_no_canary, 1),
                "peak_rss_mb": round(peak),
                "predict_ai1_ai2_ai3_one_row_p50_us": round(float(np.percentile(lat, 50)) / 1e3, 1),
                "predict_ai1_ai2_ai3_one_row_p99_us": round(float(np.percentile(lat, 99)) / 1e3, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
