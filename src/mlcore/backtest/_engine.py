"""The pair backtest from Python: typed parameters in, equity, positions and trades out; the
bar loop itself is :func:`mlcore.backtest._kernel.simulate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlcore.backtest import _kernel as k


@dataclass(frozen=True)
class PairStrategy:
    """Rules and account of one pair's backtest (see :mod:`mlcore.backtest._kernel`)."""

    capital: float
    theta1: float
    theta2: float
    entry_z: float = 2.0
    exit_z: float = 0.5
    max_hold_bars: int = 48
    dd_halt: float = 0.15
    dd_flatten: float = 0.20
    lot_step_a: float = 1.0
    lot_step_b: float = 1.0
    min_lot_a: float = 0.0
    min_lot_b: float = 0.0
    min_notional: float = 0.0
    risk_fraction: float = 1.0
    latency_bars: int = 1

    def vector(self) -> np.ndarray:
        """The kernel's parameter vector."""
        p = np.zeros(k.N_PARAMS)
        p[k.P_CAPITAL] = self.capital
        p[k.P_THETA1], p[k.P_THETA2] = self.theta1, self.theta2
        p[k.P_ENTRY_Z], p[k.P_EXIT_Z] = self.entry_z, self.exit_z
        p[k.P_MAX_HOLD] = self.max_hold_bars
        p[k.P_DD_HALT], p[k.P_DD_FLATTEN] = self.dd_halt, self.dd_flatten
        p[k.P_LOT_A], p[k.P_LOT_B] = self.lot_step_a, self.lot_step_b
        p[k.P_MIN_LOT_A], p[k.P_MIN_LOT_B] = self.min_lot_a, self.min_lot_b
        p[k.P_MIN_NOTIONAL] = self.min_notional
        p[k.P_RISK_FRACTION] = self.risk_fraction
        p[k.P_LATENCY] = self.latency_bars
        return p


@dataclass
class PairBacktest:
    """Equity after each bar, the units held after it, the trades and the counters."""

    equity: np.ndarray
    units_a: np.ndarray
    units_b: np.ndarray
    trades: pd.DataFrame
    counters: dict[str, int]


_TRADE_COLUMNS = [
    "entry_decided_bar", "entry_bar", "exit_bar", "side", "units_a", "units_b", "entry_price_a",
    "entry_price_b", "exit_price_a", "exit_price_b", "cost", "carry", "pnl", "exit_reason",
]  # fmt: skip


def _f64(name: str, values: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape == ():
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected {n} values (one per bar), got shape {arr.shape}")
    return arr


def simulate_pair(
    price_a: ArrayLike, price_b: ArrayLike, beta: ArrayLike, z: ArrayLike, prob: ArrayLike,
    risk: ArrayLike, scale: ArrayLike, strategy: PairStrategy, *, cost_a: ArrayLike = 0.0,
    cost_b: ArrayLike = 0.0, swap_a: ArrayLike = 0.0, swap_b: ArrayLike = 0.0,
) -> PairBacktest:  # fmt: skip
    """Backtest one pair over aligned bars. Prices are closes in the account currency; costs
    and swaps are fractions of notional (per fill, per bar held), scalars or one per bar."""
    pa = np.ascontiguousarray(price_a, dtype=np.float64)
    n = len(pa)
    arrays = {
        name: _f64(name, v, n)
        for name, v in (
            ("price_a", pa), ("price_b", price_b), ("beta", beta), ("z", z), ("prob", prob),
            ("risk", risk), ("scale", scale), ("cost_a", cost_a), ("cost_b", cost_b),
            ("swap_a", swap_a), ("swap_b", swap_b),
        )
    }  # fmt: skip
    for name in ("price_a", "price_b"):
        bad = ~(np.isfinite(arrays[name]) & (arrays[name] > 0))
        if bad.any():
            raise ValueError(
                f"{name}: prices must be finite and > 0, bar {int(np.argmax(bad))} is not"
            )
    for name in ("cost_a", "cost_b", "swap_a", "swap_b"):
        if not (np.isfinite(arrays[name]) & (arrays[name] >= 0)).all():
            raise ValueError(f"{name}: costs must be finite and >= 0")
    inputs = np.stack(list(arrays.values()))
    out = np.empty((3, n))
    # A trade spans at least two bars (decide, fill, decide, fill), so n // 2 + 2 rows suffice.
    trades = np.empty((n // 2 + 2, k.N_TRADE_COLS))  # rows are zeroed as trades open
    counters = np.zeros(k.N_COUNTERS, dtype=np.int64)
    count = k.simulate(inputs, strategy.vector(), out, trades, counters)
    equity, units_a, units_b = out[k.O_EQUITY], out[k.O_UNITS_A], out[k.O_UNITS_B]
    frame = pd.DataFrame(trades[:count], columns=_TRADE_COLUMNS)
    for col in ("entry_decided_bar", "entry_bar", "exit_bar", "side"):
        frame[col] = frame[col].astype(np.int64)
    frame["exit_reason"] = frame["exit_reason"].astype(np.int64).map(k.EXIT_REASONS)
    names = ("refused_lot", "refused_notional", "signals_while_halted", "signals")
    return PairBacktest(
        equity, units_a, units_b, frame, {nm: int(c) for nm, c in zip(names, counters, strict=True)}
    )
