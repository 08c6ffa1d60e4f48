"""Stress scenarios on the test window at the adopted θ. Each alters what the market or the
broker does and leaves the signals as the models computed them, so it measures how the
strategy fares when the world departs from what it was trained on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from mlcore.backtest._inputs import PairBars
from mlcore.backtest._portfolio import AccountRules, PairSetup, PortfolioRun, run_portfolio
from mlcore.config import StressPolicy

SCENARIOS = ("base", "atr_noise", "correlation_breakdown", "cost_increase", "latency", "gap_events")


def _positive(prices: np.ndarray, reference: np.ndarray) -> np.ndarray:
    # Noise must not make a price non-positive: floor at a tenth of the undisturbed price.
    out: np.ndarray = np.maximum(prices, 0.1 * reference)
    return out


def atr_noise(b: PairBars, k: float, rng: np.random.Generator) -> PairBars:
    """Fill and mark prices off by N(0, (k x ATR)^2) per leg and bar."""
    pa = _positive(b.price_a + rng.standard_normal(len(b.price_a)) * k * b.atr_a, b.price_a)
    pb = _positive(b.price_b + rng.standard_normal(len(b.price_b)) * k * b.atr_b, b.price_b)
    return replace(b, price_a=pa, price_b=pb)


def correlation_breakdown(b: PairBars, share: float, rng: np.random.Generator) -> PairBars:
    """Leg B's log returns over the last ``share`` of the bars are shuffled: B keeps its
    volatility but stops moving with A."""
    n = len(b.price_b)
    start = int(n * (1.0 - share))
    if n - start < 3:
        return b
    start = max(start, 1)
    steps = np.diff(np.log(b.price_b[start - 1 :]))
    out = b.price_b.copy()
    out[start:] = b.price_b[start - 1] * np.exp(np.cumsum(rng.permutation(steps)))
    return replace(b, price_b=out)


def gap_events(b: PairBars, count: int, size_atr: float, rng: np.random.Generator) -> PairBars:
    """``count`` jumps of ``size_atr`` x ATR (random sign) in leg A that persist."""
    n = len(b.price_a)
    if count == 0 or n < 2:
        return b
    at = np.sort(rng.choice(np.arange(1, n), size=min(count, n - 1), replace=False))
    shift = np.zeros(n)
    for i in at:
        shift[i:] += rng.choice([-1.0, 1.0]) * size_atr * b.atr_a[i]
    return replace(b, price_a=_positive(b.price_a + shift, b.price_a))


def run_stress(
    bars: list[PairBars], setups: dict[str, PairSetup], theta: tuple[float, float],
    policy: StressPolicy, account: AccountRules | None = None,
) -> tuple[pd.DataFrame, dict[str, PortfolioRun]]:  # fmt: skip
    """Every scenario's annual return, Sharpe, MaxDD and trades per year (seeded)."""
    rng = np.random.default_rng(policy.seed)

    def each(f: Callable[[PairBars], PairBars]) -> list[PairBars]:
        return [f(b) for b in bars]

    variants: dict[str, tuple[list[PairBars], dict[str, Any]]] = {
        "base": (bars, {}),
        "atr_noise": (each(lambda b: atr_noise(b, policy.atr_noise, rng)), {}),
        "correlation_breakdown": (
            each(lambda b: correlation_breakdown(b, policy.correlation_breakdown_share, rng)),
            {},
        ),
        "cost_increase": (bars, {"cost_multiplier": policy.cost_multiplier}),
        "latency": (bars, {"latency_bars": policy.latency_bars}),
        "gap_events": (each(lambda b: gap_events(b, policy.gap_events, policy.gap_atr, rng)), {}),
    }
    described = {
        "base": "as backtested",
        "atr_noise": f"fill/mark prices + N(0, ({policy.atr_noise:g} ATR)^2)",
        "correlation_breakdown": (
            f"leg B returns shuffled over the last {policy.correlation_breakdown_share:.0%}"
        ),
        "cost_increase": f"every cost x {policy.cost_multiplier:g}",
        "latency": f"fills {policy.latency_bars} bars after the decision",
        "gap_events": f"{policy.gap_events} jumps of {policy.gap_atr:g} ATR in leg A",
    }
    rows = []
    runs = {}
    for name, (variant, kwargs) in variants.items():
        r = run_portfolio(variant, setups, *theta, account=account, **kwargs)
        runs[name] = r
        m = r.metrics
        rows.append({
            "scenario": name, "description": described[name],
            "annual_return": m.get("annual_return"), "sharpe": m.get("sharpe"),
            "max_drawdown": m.get("max_drawdown"), "trades_per_year": m.get("trades_per_year"),
            "trades": m.get("trades"),
        })  # fmt: skip
    return pd.DataFrame(rows), runs
