"""The pair backtest from Python: typed parameters in, equity, positions and trades out; the
bar loop itself is :func:`mlcore.backtest._kernel.simulate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlcore.backtest import _kernel as k
from mlcore.execution import ZERO_COSTS, LegCosts


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
    halt_review_bars: int = -1  # bars until a halt is reviewed and lifted; negative: never

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
        p[k.P_HALT_REVIEW] = self.halt_review_bars
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


def _require(name: str, ok: np.ndarray, what: str) -> None:
    """Raise naming the first bar where ``ok`` is false."""
    if not ok.all():
        raise ValueError(f"{name}: {what}, bar {int(np.argmin(ok))} is not")


def _leg_rates(name: str, costs: LegCosts) -> list[float]:
    rates = {"fixed": costs.fixed, "slippage": costs.slippage, "swap_per_bar": costs.swap_per_bar}
    for field, v in rates.items():
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name}.{field}: costs must be finite and >= 0, got {v}")
    return list(rates.values())


def simulate_pair(
    price_a: ArrayLike, price_b: ArrayLike, beta: ArrayLike, z: ArrayLike, prob: ArrayLike,
    risk: ArrayLike, scale: ArrayLike, strategy: PairStrategy, *,
    costs_a: LegCosts = ZERO_COSTS, costs_b: LegCosts = ZERO_COSTS,
    slippage_factor: ArrayLike = 1.0, control: ArrayLike = 0.0,
) -> PairBacktest:  # fmt: skip
    """Backtest one pair over aligned bars. Prices are closes in the account currency; the
    other inputs are scalars or one value per bar; ``slippage_factor`` is each bar's time-of-day
    factor on the legs' slippage rates (see :class:`LegCosts`); ``control`` the account's
    instruction per bar (0 none, 1 no new entry, 2 also close what is held)."""
    pa = np.asarray(price_a, dtype=np.float64)
    if pa.ndim != 1:
        raise ValueError(f"price_a: expected one value per bar, got shape {pa.shape}")
    n = len(pa)
    inputs = np.empty((k.N_INPUTS, n))
    for row, name, values in (
        (k.I_PA, "price_a", pa), (k.I_PB, "price_b", price_b), (k.I_BETA, "beta", beta),
        (k.I_Z, "z", z), (k.I_PROB, "prob", prob), (k.I_RISK, "risk", risk),
        (k.I_SCALE, "scale", scale), (k.I_FACTOR, "slippage_factor", slippage_factor),
        (k.I_CONTROL, "control", control),
    ):  # fmt: skip
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape not in ((), (n,)):
            raise ValueError(f"{name}: expected {n} values (one per bar), got shape {arr.shape}")
        inputs[row] = arr
    for row, name in ((k.I_PA, "price_a"), (k.I_PB, "price_b")):
        v = inputs[row]
        _require(name, (v > 0) & (v < np.inf), "prices must be finite and > 0")
    v = inputs[k.I_FACTOR]
    _require("slippage_factor", (v >= 0) & (v < np.inf), "factors must be finite and >= 0")
    v = inputs[k.I_CONTROL]
    _require("control", (v == 0) | (v == 1) | (v == 2), "controls must be 0, 1 or 2")
    params = strategy.vector()
    params[[k.P_FIXED_A, k.P_SLIP_A, k.P_SWAP_A]] = _leg_rates("costs_a", costs_a)
    params[[k.P_FIXED_B, k.P_SLIP_B, k.P_SWAP_B]] = _leg_rates("costs_b", costs_b)
    out = np.empty((3, n))
    # A trade spans at least two bars (decide, fill, decide, fill), so n // 2 + 2 rows suffice.
    trades = np.empty((n // 2 + 2, k.N_TRADE_COLS))  # rows are zeroed as trades open
    counters = np.zeros(k.N_COUNTERS, dtype=np.int64)
    count = k.simulate(inputs, params, out, trades, counters)
    equity, units_a, units_b = out[k.O_EQUITY], out[k.O_UNITS_A], out[k.O_UNITS_B]
    frame = pd.DataFrame(trades[:count], columns=_TRADE_COLUMNS)
    for col in ("entry_decided_bar", "entry_bar", "exit_bar", "side"):
        frame[col] = frame[col].astype(np.int64)
    frame["exit_reason"] = frame["exit_reason"].astype(np.int64).map(k.EXIT_REASONS)
    names = ("refused_lot", "refused_notional", "signals_while_halted", "signals")
    return PairBacktest(
        equity, units_a, units_b, frame, {nm: int(c) for nm, c in zip(names, counters, strict=True)}
    )
