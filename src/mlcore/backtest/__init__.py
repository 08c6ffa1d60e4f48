"""Backtest stage: model outputs per bar, the compiled β-neutral pair engine with the cost
table, θ search and stabilisation, stress scenarios, adoption gates, stored results and the
HTML report."""

from mlcore.backtest._engine import PairBacktest, PairStrategy, simulate_pair
from mlcore.backtest._gates import Decision, evaluate_gates
from mlcore.backtest._inputs import PairBars, fx_rate, pair_bars
from mlcore.backtest._portfolio import (
    AccountRules,
    PairSetup,
    PortfolioRun,
    account_path,
    account_rules,
    account_stops,
    pair_setups,
    run_portfolio,
)
from mlcore.backtest._report import ReportInputs, render_report, write_report
from mlcore.backtest._run import (
    BacktestReport,
    ThetaRun,
    optimize_theta,
    rebuild_report,
    run_backtest,
)
from mlcore.backtest._stress import SCENARIOS, run_stress
from mlcore.backtest._theta import (
    SearchResult,
    Stabilised,
    grid,
    objective,
    search_theta,
    stabilise,
)

# Moved to mlcore.execution (shared with serving); re-exported for research code and the CLI.
from mlcore.execution import (
    ZERO_COSTS,
    LegCosts,
    PairModels,
    leg_costs,
    previous_theta,
    resolve_model,
    slippage_factor_at,
    slippage_factors,
)

__all__ = [
    "SCENARIOS",
    "ZERO_COSTS",
    "AccountRules",
    "BacktestReport",
    "Decision",
    "LegCosts",
    "PairBacktest",
    "PairBars",
    "PairModels",
    "PairSetup",
    "PairStrategy",
    "PortfolioRun",
    "ReportInputs",
    "SearchResult",
    "Stabilised",
    "ThetaRun",
    "account_path",
    "account_rules",
    "account_stops",
    "evaluate_gates",
    "fx_rate",
    "grid",
    "leg_costs",
    "objective",
    "optimize_theta",
    "pair_bars",
    "pair_setups",
    "previous_theta",
    "rebuild_report",
    "render_report",
    "resolve_model",
    "run_backtest",
    "run_portfolio",
    "run_stress",
    "search_theta",
    "simulate_pair",
    "slippage_factor_at",
    "slippage_factors",
    "stabilise",
    "write_report",
]
