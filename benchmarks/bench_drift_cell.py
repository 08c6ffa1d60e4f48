"""One false-alarm cell of bench_drift.py with more training windows, and the rate's
between-training standard error (the rate of long-memory features depends mostly on which
training window was drawn, so the binomial error of the pooled windows understates it).

Run: .venv/bin/python benchmarks/bench_drift_cell.py {ar1|real} WINDOW TRAININGS TRIALS SEED
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from mlcore.config import load_config
from mlcore.feedback import BlockRule, assess_drift, block_length


def _bench() -> ModuleType:
    """bench_drift.py, loaded from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "bench_drift", Path(__file__).resolve().parent / "bench_drift.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit("benchmarks/bench_drift.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_drift"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> None:
    proc, w, trainings, trials, seed = (
        argv[0],
        int(argv[1]),
        int(argv[2]),
        int(argv[3]),
        int(argv[4]),
    )
    b = _bench()
    ar1, bootstrapped, _detector, training_bars = (
        b.ar1,
        b.bootstrapped,
        b._detector,
        b.training_bars,
    )
    p = load_config(b.REPO / "configs", "dev").analytics.drift
    real = b.real_features()
    stream = (
        (lambda g, k: ar1(g, k))
        if proc == "ar1"
        else bootstrapped(real, block_length(real, BlockRule.POLITIS_WHITE, 500))
    )
    rng = np.random.default_rng(seed)
    n = training_bars(20000, w, p)
    per_any, per_single = [], []
    t0 = time.time()
    for t in range(trainings):
        det = _detector(stream(rng, n), [w], 1000, seed + t, p)
        a = e = 0
        for _ in range(trials):
            r = assess_drift(det.ref, det.tables[w], stream(rng, w), p.false_alarm_rate)  # type: ignore[arg-type]
            a += bool(r.drifted)
            e += sum((f.psi > f.psi_threshold) + (f.shift > f.shift_threshold) for f in r.features)
        per_any.append(a / trials)
        per_single.append(e / (8 * trials))
    pa, ps = np.array(per_any), np.array(per_single)
    se_any = pa.std(ddof=1) / np.sqrt(len(pa))
    se_single = ps.std(ddof=1) / np.sqrt(len(ps))
    print(f"{proc} {w} n {n} trainings {trainings} any {pa.mean():.4f} (cluster se "
          f"{se_any:.4f}) single {ps.mean():.4f} (cluster se {se_single:.4f}) "
          f"{time.time() - t0:.0f}s")  # fmt: skip
    print("per-training single", np.round(ps, 4).tolist())


if __name__ == "__main__":
    main(sys.argv[1:])
