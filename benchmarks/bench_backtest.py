"""Backtest engine speed on N bars of one pair: the compiled bar loop (bar-steps per second on
one core), the whole ``simulate_pair`` call (input checks and copies included), and vectorbt's
``Portfolio.from_orders`` replaying the same fills in the same run, with each bar's fee the
engine's fill rate on that bar (fixed + slippage x time-of-day factor); its value must equal the
engine's equity. Times are the best of 5 runs after an untimed one.

The loop skips through flat bars cheaply, so its speed depends on how often a position is held:
``--entry-z 2`` (the default, as configured) holds a position on about 12% of the bars;
``--entry-z 0.25`` on about 75% (a much busier strategy, near the loop's worst case).

Run: .venv/bin/python benchmarks/bench_backtest.py [--bars N] [--entry-z Z]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlcore.backtest import LegCosts, PairStrategy, simulate_pair
from mlcore.backtest import _kernel as k


def _best(fn: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    out = fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--entry-z", type=float, default=2.0)
    args = ap.parse_args()
    n = args.bars
    rng = np.random.default_rng(0)
    pb = 50 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    spread = np.zeros(n)
    shocks = rng.normal(0, 0.003, n)
    for i in range(1, n):
        spread[i] = 0.97 * spread[i - 1] + shocks[i]
    pa = np.exp(1.1 * np.log(pb) + 0.7 + spread)
    z = spread / 0.012
    prob, risk, scale = rng.uniform(0.5, 1, n), rng.uniform(0, 0.5, n), rng.uniform(0.2, 1, n)
    strategy = PairStrategy(
        capital=1e5,
        theta1=0.7,
        theta2=0.3,
        lot_step_a=0.01,
        lot_step_b=0.01,
        max_hold_bars=30,
        entry_z=args.entry_z,
        exit_z=min(0.5, args.entry_z / 2),
    )
    # Hourly bars: slippage x1.5 from 00:00 to 06:00, x2 from 21:00 (as cost_table.yaml's windows).
    hour = np.arange(n) % 24
    factor = np.where(hour < 6, 1.5, np.where(hour >= 21, 2.0, 1.0))
    # No swap: vectorbt has none, and its value must equal the engine's equity.
    costs_a, costs_b = LegCosts(fixed=0.00015, slippage=0.00005), LegCosts(0.0002, 0.0001)
    inputs = np.stack([pa, pb, np.full(n, 1.1), z, prob, risk, scale, factor, np.zeros(n)])
    out = np.empty((3, n))
    trades = np.empty((n // 2 + 2, k.N_TRADE_COLS))
    counters = np.zeros(k.N_COUNTERS, dtype=np.int64)
    params = strategy.vector()
    params[[k.P_FIXED_A, k.P_SLIP_A, k.P_FIXED_B, k.P_SLIP_B]] = [
        costs_a.fixed, costs_a.slippage, costs_b.fixed, costs_b.slippage,
    ]  # fmt: skip
    t_kernel, _ = _best(lambda: k.simulate(inputs, params, out, trades, counters))

    def call() -> Any:
        return simulate_pair(
            pa, pb, 1.1, z, prob, risk, scale, strategy, costs_a=costs_a, costs_b=costs_b,
            slippage_factor=factor,
        )  # fmt: skip

    t_call, bt = _best(call)
    assert np.array_equal(out[k.O_EQUITY], bt.equity)

    import vectorbt as vbt  # its import takes seconds: only here

    orders = pd.DataFrame({"a": np.diff(np.r_[0.0, bt.units_a]),
                           "b": np.diff(np.r_[0.0, bt.units_b])})  # fmt: skip
    close = pd.DataFrame({"a": pa, "b": pb})
    fees = np.column_stack(
        [costs_a.fixed + costs_a.slippage * factor, costs_b.fixed + costs_b.slippage * factor]
    )

    def replay() -> Any:
        return vbt.Portfolio.from_orders(
            close, orders, size_type="amount", fees=fees, init_cash=1e5, cash_sharing=True,
            group_by=True, call_seq="auto", direction="both", freq="1h",
        ).value()  # fmt: skip

    t_vbt, value = _best(replay)
    diff = float(np.max(np.abs(value.to_numpy() - bt.equity) / np.abs(bt.equity)))
    print(
        json.dumps(
            {
                "bars": n,
                "entry_z": args.entry_z,
                "trades": len(bt.trades),
                "share_of_bars_held": round(float(np.mean(bt.units_a != 0)), 3),
                "kernel_s": round(t_kernel, 4),
                "kernel_bar_steps_per_s_M": round(n / t_kernel / 1e6, 1),
                "simulate_pair_s": round(t_call, 4),
                "vectorbt_from_orders_value_s": round(t_vbt, 4),
                "kernel_speedup_vs_vectorbt": round(t_vbt / t_kernel, 1),
                "simulate_pair_speedup_vs_vectorbt": round(t_vbt / t_call, 1),
                "max_relative_equity_difference_vs_vectorbt": diff,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
