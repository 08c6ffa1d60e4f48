"""A window without trades says which gate no bar passed, with the figure and the gate's range;
the plain z-score rule runs the same engine with every AI gate open, so it trades wherever |z|
reaches entry_z, whatever the models say."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mlcore.backtest import LegCosts, PairBars, PairSetup, PairStrategy, run_portfolio
from mlcore.backtest._explain import why_no_trades, zscore_rule
from mlcore.config import ThetaRange

H = 3_600 * 10**9
BOX = ThetaRange(theta1=[0.60, 0.85], theta2=[0.20, 0.45])
SETUPS = {"A": PairSetup("A", PairStrategy(capital=10_000.0, theta1=0.7, theta2=0.3),
                         LegCosts(), LegCosts())}  # fmt: skip


def _bars(n: int = 40) -> PairBars:
    z = np.zeros(n)
    z[5::10] = 2.5  # an event opens every 10 bars, back to 0 at the next bar
    prob = np.full(n, np.nan)
    prob[5::10] = 0.9
    return PairBars(
        pair_id="A", ts_ns=np.arange(n, dtype=np.int64) * H,
        price_a=100.0 + np.sin(np.arange(n)), price_b=np.full(n, 50.0), beta=np.ones(n), z=z,
        prob=prob, risk=np.full(n, 0.1), scale=np.ones(n), atr_a=np.ones(n), atr_b=np.ones(n),
        slippage=np.ones(n), fx_blocked=np.zeros(n, dtype=bool),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"z": np.full(40, 1.2)}, "|z| never reaches entry_z 2 (40 bars, largest |z| 1.20)"),
        ({"prob": np.full(40, np.nan)}, "none an AI1 event open"),
        ({"prob": np.where(np.arange(40) % 10 == 5, 0.49, np.nan)},
         "AI1's calibrated probability never exceeds 0.49 at its 4 event opens, not above θ1 "
         "0.70 (range [0.60, 0.85])"),
        ({"risk": np.full(40, 0.8)}, "AI2's risk score is never below θ2 0.30 (range [0.20, "
         "0.45]) where AI1 passes; lowest 0.80"),
        ({"scale": np.zeros(40)}, "AI3's position scale is 0"),
        ({"beta": np.full(40, np.nan)}, "β is undefined or 0"),
    ],
    ids=["z", "no-event", "theta1", "theta2", "scale", "beta"],
)  # fmt: skip
def test_the_first_gate_no_bar_passes_is_named(change: dict[str, np.ndarray], why: str) -> None:
    bars = replace(_bars(), **change)
    run = run_portfolio([bars], SETUPS, 0.7, 0.3)
    assert run.metrics["trades"] == 0
    line = why_no_trades([bars], SETUPS, (0.7, 0.3), BOX, "test")
    assert line.startswith("no trades in the test window: ") and why in line, line


def test_the_zscore_rule_trades_where_the_models_block_every_entry() -> None:
    blocked = replace(_bars(), prob=np.where(np.arange(40) % 10 == 5, 0.49, np.nan))
    assert run_portfolio([blocked], SETUPS, 0.7, 0.3).metrics["trades"] == 0
    plain = run_portfolio(zscore_rule([blocked]), SETUPS, 0.0, 1.0)
    # Every bar at |z| >= 2 opens (the AI1 event definition is the model's, not the rule's).
    assert plain.metrics["trades"] == 4
    # The gates passed with the models' own outputs give the same trades as the open rule.
    assert run_portfolio([_bars()], SETUPS, 0.7, 0.3).metrics["trades"] == 4


def test_kept_previous_theta_says_why_the_found_theta_trades_nothing() -> None:
    """KO/PEP daily: the search's best objective was a θ that made no trade (AI1 constant at
    0.78, θ1 0.80), and the backtest said only "kept previous θ: 0 trades at the found θ <
    min_trades 30", not why."""
    from mlcore.backtest import stabilise
    from mlcore.backtest._explain import why_found_trades_none
    from mlcore.config import StabilisationPolicy

    flat = replace(_bars(), prob=np.where(np.arange(40) % 10 == 5, 0.78, np.nan))
    found, previous = (0.80, 0.20), (0.70, 0.30)
    found_run = run_portfolio([flat], SETUPS, *found)
    assert found_run.metrics["trades"] == 0
    why = why_found_trades_none([flat], SETUPS, found, found_run.metrics["trades"], BOX)
    assert why.startswith("AI1's calibrated probability never exceeds 0.78 at its 4 event "
                          "opens, not above θ1 0.80"), why  # fmt: skip
    policy = StabilisationPolicy(max_step=0.03, weight_new=0.3, min_trades=30, confidence=0.95,
                                 gate_pass_rate=[0.05, 0.40])  # fmt: skip
    prev_run = run_portfolio([flat], SETUPS, *previous)
    st = stabilise(found, previous, found_run, prev_run, flat.risk, policy, BOX, why)
    assert st.kept_previous
    assert st.steps[0] == f"kept previous θ: 0 trades at the found θ < min_trades 30; {why}"
    assert why_found_trades_none([flat], SETUPS, previous, prev_run.metrics["trades"], BOX) == ""
