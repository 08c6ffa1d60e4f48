"""The live drawdown tracker against the backtest itself: on random paths, the live decision
rules plus :class:`PairDrawdown` hold the kernel's equity bar for bar and halt, flatten and
review on the kernel's bars; :class:`BookDrawdown` finds account_stops' stops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.backtest import LegCosts, PairStrategy, simulate_pair
from mlcore.backtest._portfolio import AccountRules, account_stops
from mlcore.config import TradingRules
from mlcore.serving._drawdown import (
    BookDrawdown,
    DDLevel,
    DrawdownLimits,
    PairDrawdown,
    PairStep,
)
from mlcore.signals import DecisionRules, LegSpec, PairDecider

RULES = TradingRules(tick_size=0.01, lot_step=0.01, min_lot=0.0, min_notional_usd=0.0,
                     margin_rate=0.05)  # fmt: skip
COSTS_A = LegCosts(fixed=1e-4, slippage=5e-5, swap_per_bar=2e-6)
COSTS_B = LegCosts(fixed=2e-4, slippage=1e-4, swap_per_bar=3e-6)


def _path(seed: int, n: int, vol: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pa = 100.0 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    pb = 50.0 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    z = rng.normal(0, 1.6, n)
    prob = np.where(rng.random(n) < 0.7, rng.random(n), np.nan)
    return {"pa": pa, "pb": pb, "z": z, "prob": prob, "risk": rng.random(n),
            "scale": rng.uniform(0.2, 1.0, n), "beta": rng.uniform(0.3, 1.8, n),
            "factor": rng.choice([1.0, 1.5, 2.0], n)}  # fmt: skip


def _live(
    p: dict[str, np.ndarray], strat: PairStrategy, limits: DrawdownLimits, control: np.ndarray
) -> tuple[list[float], list[tuple[int, str]]]:  # fmt: skip
    """The worker's path: the drawdown's verdict first, then the decision, then the order."""
    decider = PairDecider(DecisionRules(strat.theta1, strat.theta2, strat.entry_z, strat.exit_z,
                                        strat.max_hold_bars, strat.latency_bars))  # fmt: skip
    legs = LegSpec("A", RULES, COSTS_A), LegSpec("B", RULES, COSTS_B)
    dd = PairDrawdown(strat.capital, strat.risk_fraction, strat.latency_bars, *legs, limits)
    equity, events = [], []
    for t in range(len(p["pa"])):
        args = (p["pa"][t], p["pb"][t], p["factor"][t])
        step = dd.mark(*args, control=control[t])
        events += [(t, e) for e in step.events]
        d = decider.step(p["z"][t], p["beta"][t], p["prob"][t], p["risk"][t], p["scale"][t],
                         halted=step.block, flatten=bool(step.flatten))  # fmt: skip
        dd.order(d.action, d.side, p["beta"][t], p["scale"][t], *args)
        equity.append(dd.s.equity)
    return equity, events


@given(
    seed=st.integers(0, 2**32 - 1), lat=st.integers(1, 2), review=st.integers(-1, 30),
    vol=st.sampled_from([0.002, 0.01, 0.03]), halt=st.floats(0.005, 0.05),
    account=st.booleans(),
)  # fmt: skip
def test_the_tracker_holds_the_kernels_equity_and_stops(
    seed: int, lat: int, review: int, vol: float, halt: float, account: bool
) -> None:
    n = 300
    p = _path(seed, n, vol)
    strat = PairStrategy(capital=100_000.0, theta1=0.3, theta2=0.8, entry_z=1.5, exit_z=0.4,
                         max_hold_bars=25, dd_halt=halt, dd_flatten=halt * 1.5,
                         lot_step_a=0.01, lot_step_b=0.01, risk_fraction=2.0, latency_bars=lat,
                         halt_review_bars=review)  # fmt: skip
    control = np.zeros(n)
    if account:  # an account halt, then an account flatten, from the book
        rng = np.random.default_rng(seed + 1)
        a, b = sorted(rng.integers(0, n, 2))
        control[a:b] = 1.0
        control[b : b + 20] = 2.0
    bt = simulate_pair(p["pa"], p["pb"], p["beta"], p["z"], p["prob"], p["risk"], p["scale"],
                       strat, costs_a=COSTS_A, costs_b=COSTS_B, slippage_factor=p["factor"],
                       control=control)  # fmt: skip
    limits = DrawdownLimits(halt * 0.5, halt, halt * 1.5, review)
    equity, events = _live(p, strat, limits, control)
    cut = n - 1  # the kernel closes what is open at the last bar
    np.testing.assert_allclose(equity[:cut], bt.equity[:cut], rtol=1e-12, atol=1e-9)
    t = bt.trades
    dd_exits = sorted(int(x) - lat for x in t.loc[t.exit_reason == "dd_flatten", "exit_bar"])
    assert [b for b, e in events if e == "flatten" and b + lat < n] == dd_exits
    # A halt is where the equity first falls `halt` below its peak (reset by each review).
    peak, halted_at, halts = strat.capital, -1, []
    reviews = [b for b, e in events if e == "review"]
    for i, e in enumerate(bt.equity[:cut]):
        if i in reviews:
            peak, halted_at = e, -1
        peak = max(peak, e)
        if halted_at < 0 and 1.0 - e / peak >= halt:
            halted_at = i
            halts.append(i)
    assert [b for b, e in events if e == "halt" and b < cut] == halts
    assert all(b - h >= review >= 0 for b, h in zip(reviews, halts, strict=False))


def test_a_warn_is_said_once_per_fall_and_the_levels_are_named() -> None:
    leg = LegSpec("A", RULES, LegCosts())
    dd = PairDrawdown(1000.0, 1.0, 1, leg, LegSpec("B", RULES, LegCosts()),
                      DrawdownLimits(0.02, 0.04, 0.06, -1))  # fmt: skip
    dd.mark(100.0, 100.0, 1.0)
    dd.order("entry", 1, 1.0, 1.0, 100.0, 100.0, 1.0)
    steps = [dd.mark(pa, 100.0, 1.0) for pa in (100.0, 97.0, 96.5, 101.0, 96.9, 88.0)]
    # 5 units a leg, long A: 96.5 is 1.75% down, 101 a new peak (1005), 96.9 2.04%, 88 6.5%
    assert [s.level for s in steps] == [DDLevel.NONE, DDLevel.NONE, DDLevel.NONE, DDLevel.NONE,
                                        DDLevel.WARN, DDLevel.FLATTEN]  # fmt: skip
    assert [s.events for s in steps][-2:] == [("warn",), ("halt", "flatten")]
    assert steps[-1].flatten == "dd_flatten" and steps[-1].block


def test_a_checkpoint_restores_the_tracker_and_refuses_garbage() -> None:
    legs = LegSpec("A", RULES, COSTS_A), LegSpec("B", RULES, COSTS_B)
    limits = DrawdownLimits(0.01, 0.02, 0.03, 5)
    one = PairDrawdown(1e4, 1.0, 1, *legs, limits)
    one.mark(100.0, 50.0, 1.0)
    one.order("entry", -1, 1.2, 0.8, 100.0, 50.0, 1.0)
    one.mark(101.0, 50.5, 1.0)
    two = PairDrawdown(1e4, 1.0, 1, *legs, limits)
    two.restore(one.state())
    assert two.state() == one.state()
    for a, b in ((102.0, 50.0), (103.0, 49.0)):
        assert one.mark(a, b, 1.0) == two.mark(a, b, 1.0)
    bad = one.state() | {"equity": "lots"}
    with pytest.raises(ValueError, match="'equity' must be a number"):
        two.restore(bad)
    with pytest.raises(ValueError, match="'halted' missing"):
        two.restore({k: v for k, v in one.state().items() if k != "halted"})
    with pytest.raises(ValueError, match="warn must be a number > 0"):
        DrawdownLimits(math.nan, 0.1, 0.2, 1)


@given(seed=st.integers(0, 2**32 - 1), review=st.integers(1, 40))
def test_the_book_finds_account_stops_bar_for_bar(seed: int, review: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    ts = np.arange(n, dtype=np.int64) * 3600 * 10**9 + 1_700_000_000 * 10**9
    equity = 1e6 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    rules = AccountRules(0.05, 0.08, review * 3600 * 10**9)
    stops = account_stops(ts, equity, 1e6, rules)
    book = BookDrawdown(1e6, DrawdownLimits(0.03, 0.05, 0.08, rules.review_ns))
    control = np.array([book.at(int(t), float(e)).control for t, e in zip(ts, equity, strict=True)])
    expect = np.zeros(n)
    for start, end, level in stops:
        window = (ts >= start) & (ts < end)
        expect[window] = np.maximum(expect[window], level)
    np.testing.assert_array_equal(control, expect)
    # The same bar time again changes nothing.
    assert book.at(int(ts[-1]), 1.0).control == control[-1]


def test_a_soft_halt_in_the_flags_never_hides_a_drawdown_flatten() -> None:
    """Before: any control in the flags won over the drawdown's step on the bar, so a pair
    whose own drawdown halt had been read back from the flags held its position on its
    drawdown-flatten bar (CI: a hold where the backtest exits). The stronger control wins."""
    from mlcore.serving._flags import Control
    from mlcore.serving._pair import _control

    def step(block: bool, flatten: str) -> PairStep:
        level = DDLevel.FLATTEN if flatten else DDLevel.HALT if block else DDLevel.NONE
        return PairStep(1.0, 1.0, 0.0, level, block, flatten, ())

    assert _control(Control.SOFT_HALT, step(True, "dd_flatten")) == (
        Control.FLATTEN, "dd_flatten")  # fmt: skip
    assert _control(Control.FLATTEN, step(True, "dd_flatten")) == (Control.FLATTEN, "dd_flatten")
    assert _control(Control.HARD_HALT, step(True, "dd_flatten")) == (Control.HARD_HALT, "")
    assert _control(Control.NONE, step(True, "")) == (Control.SOFT_HALT, "")
    assert _control(Control.FLATTEN, step(True, "")) == (Control.FLATTEN, "")
    assert _control(Control.SOFT_HALT, None) == (Control.SOFT_HALT, "")
    assert _control(Control.NONE, step(False, "")) == (Control.NONE, "")
