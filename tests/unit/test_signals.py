"""The live decision rules, legs and signal schema."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.backtest import PairStrategy, simulate_pair
from mlcore.config import TradingRules
from mlcore.execution import LegCosts
from mlcore.signals import (
    ENTRY,
    EXIT,
    HOLD,
    DecisionRules,
    LegSpec,
    PairDecider,
    build_signal,
    encode_signal,
    leg_records,
    signal_id,
    size_legs,
    validate_signal,
)

RULES = DecisionRules(theta1=0.6, theta2=0.4, entry_z=2.0, exit_z=0.5, max_hold_bars=5,
                      latency_bars=1)  # fmt: skip


def _rules(lot: float = 1.0, min_lot: float = 0.0, min_notional: float = 0.0) -> TradingRules:
    return TradingRules(tick_size=0.01, lot_step=lot, min_lot=min_lot,
                        min_notional_usd=min_notional, margin_rate=0.1)  # fmt: skip


def _decide(rules: DecisionRules, z, prob, risk, scale, beta) -> list[tuple[int, str, int]]:
    d = PairDecider(rules)
    out = []
    for t in range(len(z)):
        dec = d.step(z[t], beta[t], prob[t], risk[t], scale[t])
        if dec.action != HOLD:
            out.append((t, dec.action, dec.side))
    return out


def _backtest(rules: DecisionRules, z, prob, risk, scale, beta) -> list[tuple[int, str, int]]:
    n = len(z)
    strat = PairStrategy(
        capital=1e12, theta1=rules.theta1, theta2=rules.theta2, entry_z=rules.entry_z,
        exit_z=rules.exit_z, max_hold_bars=rules.max_hold_bars, dd_halt=10.0, dd_flatten=10.0,
        lot_step_a=1e-9, lot_step_b=1e-9, latency_bars=rules.latency_bars,
    )  # fmt: skip
    bt = simulate_pair(np.full(n, 100.0), np.full(n, 50.0), beta, z, prob, risk, scale, strat)
    out = []
    for tr in bt.trades.itertuples():
        out.append((int(tr.entry_decided_bar), ENTRY, int(tr.side)))
        if tr.exit_reason != "end_of_data":
            out.append((int(tr.exit_bar) - rules.latency_bars, EXIT, -int(tr.side)))
    return sorted(out)


@given(
    seed=st.integers(0, 2**31 - 1),
    latency=st.integers(0, 2),
    n=st.integers(20, 200),
)
def test_live_decisions_equal_the_backtest_kernel(seed: int, latency: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.normal(0, 0.8, n))
    z = np.clip(z, -4, 4)
    prob = np.where(rng.random(n) < 0.7, rng.random(n), np.nan)
    risk = rng.random(n)
    scale = rng.random(n)
    beta = rng.normal(1, 0.3, n)
    rules = DecisionRules(0.5, 0.6, 2.0, 0.5, 6, latency)
    live = _decide(rules, z, prob, risk, scale, beta)
    ref = _backtest(rules, z, prob, risk, scale, beta)
    # The backtest takes no entry whose fill would fall on the last bar; compare before that.
    cut = n - 1 - latency
    assert [x for x in live if x[0] < cut] == [x for x in ref if x[0] < cut]


def test_halt_blocks_entries_and_flatten_exits() -> None:
    d = PairDecider(RULES)
    assert d.step(2.5, 1.0, 0.9, 0.1, 0.5, halted=True).reason == "halted"
    dec = d.step(2.5, 1.0, 0.9, 0.1, 0.5)
    assert (dec.action, dec.side) == (ENTRY, -1)
    assert d.step(2.6, 1.0, math.nan, 0.1, 0.5).reason == "holding"  # filled at this bar
    dec = d.step(2.6, 1.0, math.nan, 0.1, 0.5, flatten=True)
    assert (dec.action, dec.side, dec.reason) == (EXIT, 1, "flatten")


def test_risk_flag_and_refused_bars() -> None:
    d = PairDecider(RULES)
    assert d.step(0.0, 1.0, math.nan, 0.4, 0.5).risk_flag == 1
    assert d.step(0.0, 1.0, math.nan, 0.39, 0.5).risk_flag == 0
    assert d.step(2.5, 1.0, 0.9, 0.1, 0.5, decide=False).reason == "refused"


def test_decider_state_round_trips() -> None:
    d = PairDecider(RULES)
    d.step(2.5, 1.0, 0.9, 0.1, 0.5)
    e = PairDecider(RULES)
    e.restore(d.state())
    assert e.state() == d.state()
    with pytest.raises(ValueError, match="6 integers"):
        e.restore([1, 2])


def test_legs_are_beta_neutral_rounded_and_costed() -> None:
    a = LegSpec("XAU/USD", _rules(lot=0.01, min_lot=0.01, min_notional=100), LegCosts(1e-4, 1e-4))
    b = LegSpec("XAG/USD", _rules(lot=1.0, min_lot=1.0, min_notional=100), LegCosts(2e-4, 1e-4))
    s = size_legs(100_000.0, 1.5, 2000.0, 25.0, a, b)
    assert s.refused == ""
    # A: 40 000 USD / 2000 = 20 units; B: 1.5 x 40 000 / 25 = 2400 units.
    assert (s.units_a, s.units_b) == (20.0, 2400.0)
    legs = leg_records(1, 1.5, s, 2000.0, 25.0, a, b, slippage_factor=2.0)
    assert [leg["side"] for leg in legs] == ["BUY", "SELL"]
    assert legs[1]["beta_weight"] == 1.5
    assert legs[0]["est_cost_usd"] == pytest.approx(40_000 * (1e-4 + 2e-4))
    assert legs[1]["notional_usd"] == pytest.approx(60_000)
    assert [leg["side"] for leg in leg_records(1, -1.5, s, 2000.0, 25.0, a, b, 1.0)] == [
        "BUY",
        "BUY",
    ]


def test_legs_refused_like_the_backtest() -> None:
    a = LegSpec("A", _rules(lot=1.0, min_lot=1.0), LegCosts())
    b = LegSpec("B", _rules(lot=1.0, min_lot=1.0, min_notional=5_000), LegCosts())
    assert size_legs(100.0, 1.0, 200.0, 10.0, a, b).refused == "refused_lot"
    assert size_legs(4_000.0, 1.0, 10.0, 10.0, a, b).refused == "refused_notional"
    assert size_legs(4_000.0, 1.0, math.nan, 10.0, a, b).refused == "no_price"


def _signal(**over: object) -> dict:
    a = LegSpec("XAU/USD", _rules(), LegCosts())
    b = LegSpec("XAG/USD", _rules(), LegCosts())
    s = size_legs(10_000.0, 1.0, 100.0, 50.0, a, b)
    kw = dict(
        pair_id="XAU_XAG", bar_ts_ns=1_700_000_000_000_000_000, bar_seconds=3600,
        valid_seconds=300.0, model_version="20260101T000000Z-abc",
        legs=leg_records(-1, 1.0, s, 100.0, 50.0, a, b, 1.0), z=2.3, beta=1.0,
        return_prob=0.8, risk_score=0.1, position_scale=0.5, risk_flag=0, action=ENTRY,
        side=-1, reason="gates_passed", worker="worker-0",
        core_policy={"theta1": 0.7, "theta2": 0.3, "entry_z": 2.0, "exit_z": 0.5,
                     "max_hold_bars": 48, "leverage_scale": 1.0, "halted": False,
                     "flatten": False}, params_sha256="ab" * 32,
    )  # fmt: skip
    kw.update(over)
    return build_signal(**kw)  # type: ignore[arg-type]


def test_signal_matches_its_schema_and_is_deterministic() -> None:
    s = _signal()
    validate_signal(s)
    assert s["timestamp"] == "2023-11-14T23:13:20Z"  # bar start 22:13:20 + 1 h
    assert s["valid_until"] == "2023-11-14T23:18:20Z"
    assert s["id"] == signal_id("XAU_XAG", 1_700_000_000_000_000_000, "20260101T000000Z-abc")
    assert encode_signal(s) == encode_signal(_signal())
    hold = _signal(return_prob=math.nan, action=HOLD, side=0)
    validate_signal(hold)
    assert hold["return_prob"] is None


def test_a_signal_of_an_unregistered_model_says_so() -> None:
    s = _signal(model_registered=False)
    validate_signal(s)
    assert s["metadata"]["model_registered"] is False
    assert "model_registered" not in _signal()["metadata"]  # registered: bytes unchanged
    assert s["id"] == _signal()["id"]
    s["metadata"]["model_registered"] = True  # only its absence means registered
    with pytest.raises(ValueError, match="metadata/model_registered"):
        validate_signal(s)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda s: s.pop("valid_until"), "(top)"),
        (lambda s: s.update(risk_flag=2), "risk_flag"),
        (lambda s: s["legs"][0].update(side="LONG"), "legs/0/side"),
        (lambda s: s["metadata"].update(extra=1), "metadata"),
        (lambda s: s.update(return_prob=1.5), "return_prob"),
    ],
)
def test_schema_rejects_what_breaks_the_contract(change, where: str) -> None:
    s = _signal()
    change(s)
    with pytest.raises(ValueError, match=where):
        validate_signal(s)
