"""The live and backtest numbers the automatic-rollback verdict reads, as plain records (shared
by tests/unit/test_autorollback.py and tests/integration/test_autorollback.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Live:
    n_bars: int
    n_trades: int
    sharpe: float | None
    max_drawdown: float | None


@dataclass(frozen=True)
class Bt:
    sharpe: float | None
    max_drawdown: float | None
