"""θ grid and objective, the search with its early stop, stabilisation, and the gates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcore.backtest import (
    Decision,
    PortfolioRun,
    evaluate_gates,
    grid,
    objective,
    search_theta,
    stabilise,
)
from mlcore.config import GatePolicy, StabilisationPolicy, ThetaRange, ThetaSearchPolicy

BOX = ThetaRange(theta1=[0.60, 0.85], theta2=[0.20, 0.45])
SEARCH = ThetaSearchPolicy(
    grid_step=0.05, trials=60, patience=15, lambda_dd=2.0, lambda_trades=0.05, lambda_stop=0.10,
    dd_limit=0.12, min_trades_per_year=150,
)  # fmt: skip
STAB = StabilisationPolicy(
    max_step=0.03, weight_new=0.3, min_trades=30, confidence=0.95, gate_pass_rate=[0.05, 0.40]
)
GATES = GatePolicy(
    min_sharpe=1.2, max_drawdown=0.12, min_trades_per_year=150, noninferior_sharpe_ratio=0.95,
    noninferior_dd_slack=0.03, min_deflated_sharpe=0.95, max_pbo=0.5, pbo_splits=10,
)  # fmt: skip


def _run(theta: tuple[float, float], returns: np.ndarray, **metrics: Any) -> PortfolioRun:
    return PortfolioRun(theta, {}, {}, pd.Series(dtype=float), returns, pd.DataFrame(), metrics)


def test_grid_covers_the_box_with_exact_steps() -> None:
    points = grid(BOX, 0.05)
    assert len(points) == 36
    assert points[0] == (0.6, 0.2) and points[-1] == (0.85, 0.45)
    assert (0.7, 0.3) in points


def test_objective_penalties_by_hand() -> None:
    m = {"annual_return": 0.20, "max_drawdown": 0.17, "trades_per_year": 75.0, "stop_share": 0.4}
    # 0.20 - 2.0 x 0.05 - 0.05 x 0.5 - 0.10 x 0.4
    assert objective(m, SEARCH) == pytest.approx(0.20 - 0.10 - 0.025 - 0.04, abs=1e-12)
    clean = {"annual_return": 0.1, "max_drawdown": 0.05, "trades_per_year": 200.0,
             "stop_share": 0.0}  # fmt: skip
    assert objective(clean, SEARCH) == pytest.approx(0.1)
    # Undefined metrics (no trade at all) score as the worst case, not as zero penalties.
    assert objective({"annual_return": None, "max_drawdown": None}, SEARCH) < -1.0


def test_search_finds_the_peak_and_stops_after_patience() -> None:
    calls: list[tuple[float, float]] = []

    def run(t1: float, t2: float) -> PortfolioRun:
        calls.append((t1, t2))
        # A smooth bowl with its top at (0.72, 0.33).
        annual = 0.3 - (t1 - 0.72) ** 2 * 10 - (t2 - 0.33) ** 2 * 10
        rng = np.random.default_rng(int(t1 * 1e6) + int(t2 * 1e3))
        metrics = {"annual_return": annual, "max_drawdown": 0.05, "trades_per_year": 300.0,
                   "stop_share": 0.0, "sharpe": 1.0}  # fmt: skip
        return _run((t1, t2), rng.normal(0.001, 0.01, 40), **metrics)

    res = search_theta(run, BOX, SEARCH, seed=3)
    assert res.n_trials == len(res.tried) == 36 + res.optuna_trials
    assert res.grid_returns.shape == (40, 36)
    assert abs(res.best[0] - 0.72) < 0.03 and abs(res.best[1] - 0.33) < 0.03
    assert res.best_objective >= res.tried.loc[res.tried["stage"] == "grid", "objective"].max()
    assert res.optuna_trials <= SEARCH.trials
    # Same seed, same search.
    again = search_theta(run, BOX, SEARCH, seed=3)
    pd.testing.assert_frame_equal(res.tried, again.tried)


def test_search_stops_early_on_a_flat_objective() -> None:
    def flat(t1: float, t2: float) -> PortfolioRun:
        return _run((t1, t2), np.zeros(20), annual_return=0.0, max_drawdown=0.0,
                    trades_per_year=200.0, stop_share=0.0)  # fmt: skip

    res = search_theta(flat, BOX, SEARCH, seed=1)
    assert res.stopped_early
    assert res.optuna_trials == SEARCH.patience + 1  # the first trial sets the best
    assert res.best == (0.6, 0.2)  # ties go to the first θ tried


def _pair_runs(gain: float, n: int = 250, trades: int = 100) -> tuple[PortfolioRun, PortfolioRun]:
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 0.01, n)
    noise = rng.normal(0.0, 0.001, n)
    prev = _run((0.7, 0.3), base, trades=trades)
    found = _run((0.8, 0.4), base + gain + noise, trades=trades)
    return found, prev


def test_stabilise_moves_by_ewma_and_at_most_max_step() -> None:
    found, prev = _pair_runs(gain=0.001)
    risk = np.linspace(0.0, 1.0, 1001)  # pass rate = θ2
    st = stabilise((0.8, 0.4), (0.7, 0.3), found, prev, risk, STAB, BOX)
    assert not st.kept_previous
    # EWMA asks +0.03 for both (0.3 x 0.1); exactly the step limit.
    assert st.theta == pytest.approx((0.73, 0.33))
    assert st.t_stat is not None and st.t_stat > 1.645
    far, prev2 = _pair_runs(gain=0.001)
    st2 = stabilise((0.85, 0.45), (0.6, 0.2), far, prev2, risk, STAB, BOX)
    assert st2.theta == pytest.approx((0.63, 0.23))  # EWMA asks +0.075: limited to 0.03
    assert abs(st2.theta[0] - 0.6) <= STAB.max_step + 1e-12
    assert any("step limited" in s for s in st2.steps)


def test_stabilise_keeps_previous_without_significance_or_data() -> None:
    risk = np.linspace(0.0, 1.0, 1001)
    found, prev = _pair_runs(gain=0.0)
    st = stabilise((0.8, 0.4), (0.7, 0.3), found, prev, risk, STAB, BOX)
    assert st.kept_previous and st.theta == (0.7, 0.3)
    assert "not significant" in st.steps[0]
    assert st.gate_pass_rate == pytest.approx(0.3, abs=1e-3)
    few, prev2 = _pair_runs(gain=0.01, trades=5)
    st2 = stabilise((0.8, 0.4), (0.7, 0.3), few, prev2, risk, STAB, BOX)
    assert st2.kept_previous and "min_trades" in st2.steps[0]


def test_stabilise_moves_toward_the_gate_pass_rate_band_within_the_step() -> None:
    found, prev = _pair_runs(gain=0.001)
    risk = np.linspace(0.3, 1.0, 1000, endpoint=False)  # 0.0007 apart
    # θ2 0.32 lets 2.9% of bars through; the band asks for at least 5%: θ2 0.3343.
    st = stabilise((0.7, 0.32), (0.7, 0.32), found, prev, risk, STAB, BOX)
    assert st.gate_pass_rate == pytest.approx(0.05)
    assert st.theta[1] == pytest.approx(0.3343, abs=1e-4)
    assert any("gate pass rate 2.9%" in s for s in st.steps)
    # Far outside: θ2 moves toward the band by max_step and says it is still outside.
    low_risk = np.linspace(0.0, 0.1, 1000)
    st2 = stabilise((0.7, 0.3), (0.7, 0.3), found, prev, low_risk, STAB, BOX)
    assert st2.theta[1] == pytest.approx(0.27) and st2.gate_pass_rate == 1.0
    assert any("out of reach" in s for s in st2.steps)
    assert any("still outside" in s for s in st2.steps)
    # Kept θ (no significant gain) still moves θ2 toward the band, within the step.
    same, prev3 = _pair_runs(gain=0.0)
    st3 = stabilise((0.8, 0.4), (0.7, 0.3), same, prev3, low_risk, STAB, BOX)
    assert st3.kept_previous and st3.theta == pytest.approx((0.7, 0.27))


def test_gates_adopt_only_when_every_gate_passes() -> None:
    good = {"sharpe": 1.5, "max_drawdown": 0.08, "trades_per_year": 200.0}
    decision, gates = evaluate_gates(good, 0.97, 0.2, None, GATES)
    assert decision == "adopt" and decision is Decision.ADOPT
    assert [g["gate"] for g in gates] == ["sharpe", "max_drawdown", "trades_per_year",
                                          "non_inferiority", "deflated_sharpe", "pbo"]  # fmt: skip
    assert all(g["reason"] for g in gates)
    decision, gates = evaluate_gates(good, 0.97, 0.6, None, GATES)
    assert decision == "reject"
    assert [g["gate"] for g in gates if not g["passed"]] == ["pbo"]


def test_gates_non_inferiority_by_hand() -> None:
    new = {"sharpe": 1.5, "max_drawdown": 0.08, "trades_per_year": 200.0}
    ok, gates = evaluate_gates(new, 0.99, 0.1, {"sharpe": 1.55, "max_drawdown": 0.06}, GATES)
    assert ok == "adopt"  # 1.5 >= 0.95 x 1.55 = 1.4725 and 0.08 <= 0.09
    bad, gates = evaluate_gates(new, 0.99, 0.1, {"sharpe": 1.6, "max_drawdown": 0.04}, GATES)
    assert bad == "reject"  # 1.5 < 1.52 and 0.08 > 0.07
    failed = [g for g in gates if not g["passed"]]
    assert [g["gate"] for g in failed] == ["non_inferiority"]
    assert "old 1.6000" in failed[0]["reason"]


def test_gates_fail_on_undefined_values() -> None:
    flat = {"sharpe": None, "max_drawdown": 0.0, "trades_per_year": 0.0}
    decision, gates = evaluate_gates(flat, None, None, None, GATES)
    assert decision == "reject"
    by = {g["gate"]: g for g in gates}
    assert not by["sharpe"]["passed"] and "undefined" in by["sharpe"]["reason"]
    assert not by["deflated_sharpe"]["passed"] and not by["pbo"]["passed"]


def test_non_inferiority_with_a_losing_model_in_service() -> None:
    new = {"sharpe": -0.97, "max_drawdown": 0.05, "trades_per_year": 200.0}
    # Old Sharpe -1.0: the candidate may be 5% of |old| worse, down to -1.05.
    _, gates = evaluate_gates(new, 0.99, 0.1, {"sharpe": -1.0, "max_drawdown": 0.05}, GATES)
    assert next(g for g in gates if g["gate"] == "non_inferiority")["passed"]
    _, gates = evaluate_gates(
        {**new, "sharpe": -1.06}, 0.99, 0.1, {"sharpe": -1.0, "max_drawdown": 0.05}, GATES
    )
    assert not next(g for g in gates if g["gate"] == "non_inferiority")["passed"]


def test_distinct_series_drop_duplicates_and_flat_columns() -> None:
    from mlcore.backtest._run import _distinct

    a = np.array([0.01, -0.02, 0.03])
    flat = np.zeros(3)
    m = _distinct([a, flat, a.copy(), a * 2])
    assert m.shape == (3, 2)
