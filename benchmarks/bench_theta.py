"""θ search speed on a universe like the demo's: 3 pairs x 2 years of hourly bars (17,520 bars
each, the search window of a real run is a fifth of that), with model outputs drawn at random.
Times the whole search as configured in backtest_policy.yaml (the 6 x 6 grid, then Optuna TPE
until `patience` trials bring no improvement or `trials` are spent) and the stabilisation.

Run: .venv/bin/python benchmarks/bench_theta.py [--bars N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mlcore.backtest import (
    PairBars,
    account_rules,
    pair_setups,
    run_portfolio,
    search_theta,
    stabilise,
)
from mlcore.config import load_config

HOUR_NS = 3_600 * 10**9


def _pair(pair_id: str, n: int, rng: np.random.Generator) -> PairBars:
    pb = 50 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    spread = np.zeros(n)
    shocks = rng.normal(0, 0.003, n)
    for i in range(1, n):
        spread[i] = 0.97 * spread[i - 1] + shocks[i]
    pa = np.exp(1.1 * np.log(pb) + 0.7 + spread)
    return PairBars(
        pair_id=pair_id, ts_ns=np.arange(n, dtype=np.int64) * HOUR_NS, price_a=pa, price_b=pb,
        beta=np.full(n, 1.1), z=spread / 0.012, prob=rng.uniform(0.4, 1.0, n),
        risk=rng.uniform(0.0, 0.6, n), scale=rng.uniform(0.2, 1.0, n),
        atr_a=pa * 0.002, atr_b=pb * 0.002, slippage=np.ones(n), fx_blocked=np.zeros(n, bool),
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=17_520)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs", "dev")
    rng = np.random.default_rng(args.seed)
    pairs = [p.pair_id for p in cfg.universe.pairs]
    bars = [_pair(pid, args.bars, rng) for pid in pairs]
    setups = pair_setups(cfg, "1h")
    account = account_rules(cfg, "1h")
    box, policy = cfg.core.theta_search_range, cfg.backtest

    def run(t1: float, t2: float):  # type: ignore[no-untyped-def]
        return run_portfolio(bars, setups, t1, t2, account=account)

    run(0.7, 0.3)  # compile and warm
    start = time.perf_counter()
    res = search_theta(run, box, policy.theta_search, args.seed)
    t_search = time.perf_counter() - start
    start = time.perf_counter()
    previous = (cfg.core.theta1_initial, cfg.core.theta2_initial)
    st = stabilise(
        res.best, previous, res.runs[res.best], run(*previous),
        np.concatenate([b.risk for b in bars]), policy.stabilisation, box,
    )  # fmt: skip
    t_stab = time.perf_counter() - start
    print(json.dumps({
        "pairs": len(bars), "bars_per_pair": args.bars, "settings_tried": res.n_trials,
        "optuna_trials": res.optuna_trials, "stopped_early": res.stopped_early,
        "search_s": round(t_search, 3), "per_setting_ms": round(1e3 * t_search / res.n_trials, 2),
        "stabilise_s": round(t_stab, 3), "best": res.best, "adopted": st.theta,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
