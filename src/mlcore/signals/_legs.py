"""β-neutral legs of a pair order, rounded to what the venue accepts, with their costs.

The gross notional ``capital * risk_fraction * position_scale`` is split so that the B leg's
notional is |β| times the A leg's (the backtest kernel's sizing). Each leg's units round down to
its ``lot_step``; an order whose leg rounds to nothing, falls below ``min_lot``, or whose smaller
leg is below the larger of the two ``min_notional_usd`` is refused, as the backtest refuses it.
Prices are in the account currency (a cross-currency leg is converted by the caller). A fill
pays ``units * price * (fixed + slippage * factor)`` from the same cost table as the backtest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlcore.config import TradingRules
from mlcore.execution import LegCosts


def _lots(amount: float, step: float) -> float:
    # The kernel's rounding, to the same hair of tolerance.
    return math.floor(amount / step + 1e-9) * step


@dataclass(frozen=True)
class LegSpec:
    """One leg's symbol, trading rules and cost rates."""

    symbol: str
    rules: TradingRules
    costs: LegCosts


@dataclass(frozen=True)
class Sizing:
    """Units of both legs of an order, or why there are none."""

    units_a: float
    units_b: float
    refused: str  # "" when the order stands, else refused_lot / refused_notional / no_price


def size_legs(
    gross_usd: float, beta: float, price_a_usd: float, price_b_usd: float, a: LegSpec, b: LegSpec
) -> Sizing:
    """Units of each leg for a β-neutral order of ``gross_usd`` (see the module docstring)."""
    if not (price_a_usd > 0 and price_b_usd > 0 and math.isfinite(price_a_usd + price_b_usd)):
        return Sizing(0.0, 0.0, "no_price")
    notional_a = gross_usd / (1.0 + abs(beta))
    units_a = _lots(notional_a / price_a_usd, a.rules.lot_step)
    units_b = _lots(abs(beta) * notional_a / price_b_usd, b.rules.lot_step)
    if (
        units_a <= 0.0 or units_b <= 0.0
        or units_a < a.rules.min_lot or units_b < b.rules.min_lot
    ):  # fmt: skip
        return Sizing(0.0, 0.0, "refused_lot")
    min_notional = max(a.rules.min_notional_usd, b.rules.min_notional_usd)
    if min(units_a * price_a_usd, units_b * price_b_usd) < min_notional:
        return Sizing(0.0, 0.0, "refused_notional")
    return Sizing(units_a, units_b, "")


def leg_records(
    side: int, beta: float, sizing: Sizing, price_a_usd: float, price_b_usd: float,
    a: LegSpec, b: LegSpec, slippage_factor: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """The signal's ``legs``: buying the spread (``side`` +1) buys A and sells β·B (β > 0);
    ``side`` 0 gives both legs FLAT with no units."""
    out = []
    for spec, units, price, leg_side, weight in (
        (a, sizing.units_a, price_a_usd, side, 1.0),
        (b, sizing.units_b, price_b_usd, -side * (1 if beta > 0 else -1), abs(beta)),
    ):
        cost = units * price * (spec.costs.fixed + spec.costs.slippage * slippage_factor)
        out.append({
            "symbol": spec.symbol,
            "side": "BUY" if leg_side > 0 else "SELL" if leg_side < 0 else "FLAT",
            "beta_weight": round(weight, 10),
            "units": round(units, 10) if side else 0.0,
            "notional_usd": round(units * price, 6) if side else 0.0,
            "est_cost_usd": round(cost, 6) if side else 0.0,
        })  # fmt: skip
    return out
