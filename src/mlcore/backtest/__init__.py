"""Backtest stage: the compiled β-neutral pair engine (more to come: costs from the cost table,
stress scenarios, θ search, adoption gates, the report)."""

from mlcore.backtest._costs import cost_arrays, slippage_factors
from mlcore.backtest._engine import PairBacktest, PairStrategy, simulate_pair

__all__ = ["PairBacktest", "PairStrategy", "cost_arrays", "simulate_pair", "slippage_factors"]
