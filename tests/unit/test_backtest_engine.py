"""The pair engine on hand-computed paths: fills, sizes, lots, costs, exits and stops."""

from __future__ import annotations

import numpy as np
import pytest

from mlcore.backtest import LegCosts, PairStrategy, simulate_pair

PA = [100.0, 100.0, 101.0, 102.0, 101.0, 100.0, 100.0, 100.0]
PB = [50.0] * 8
Z = [0.0, 2.5, 2.2, 1.5, 0.4, 0.0, 0.0, 0.0]
BASE = PairStrategy(capital=10_000.0, theta1=0.7, theta2=0.3)


def _run(strategy: PairStrategy = BASE, **kw: object):  # type: ignore[no-untyped-def]
    args = {"price_a": PA, "price_b": PB, "beta": 1.0, "z": Z, "prob": 0.9, "risk": 0.1,
            "scale": 1.0} | kw  # fmt: skip
    return simulate_pair(
        args.pop("price_a"), args.pop("price_b"), args.pop("beta"), args.pop("z"),
        args.pop("prob"), args.pop("risk"), args.pop("scale"), strategy, **args,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_short_spread_trade_by_hand() -> None:
    bt = _run()
    # Decided at bar 1 (z = 2.5), filled at bar 2's close: 5,000 a leg, 49 A (lot 1) and 100 B.
    [trade] = bt.trades.to_dict("records")
    assert (trade["entry_decided_bar"], trade["entry_bar"], trade["exit_bar"]) == (1, 2, 5)
    assert (trade["units_a"], trade["units_b"], trade["side"]) == (-49.0, 100.0, -1)
    assert trade["exit_reason"] == "exit_z"  # |z| = 0.4 at bar 4, filled at bar 5
    # -49 * (102 - 101) + -49 * (101 - 102) + -49 * (100 - 101) = 49
    assert trade["pnl"] == pytest.approx(49.0)
    np.testing.assert_allclose(bt.equity, [1e4, 1e4, 1e4, 9951, 1e4, 10049, 10049, 10049])
    assert bt.units_a.tolist() == [0, 0, -49, -49, -49, 0, 0, 0]
    assert bt.counters["signals"] == 1


def test_costs_and_swap_by_hand() -> None:
    bt = _run(costs_a=LegCosts(fixed=0.001, swap_per_bar=0.0001), costs_b=LegCosts(fixed=0.002))
    entry = 49 * 101 * 0.001 + 100 * 50 * 0.002
    exit_ = 49 * 100 * 0.001 + 100 * 50 * 0.002
    carry = 49 * (101 + 102 + 101) * 0.0001  # held over bars 3, 4, 5 at the previous close
    [trade] = bt.trades.to_dict("records")
    assert trade["cost"] == pytest.approx(entry + exit_)
    assert trade["carry"] == pytest.approx(carry)
    assert trade["pnl"] == pytest.approx(49.0 - entry - exit_ - carry)
    assert bt.equity[-1] == pytest.approx(10_000 + trade["pnl"])


def test_time_of_day_slippage_is_charged_per_fill_at_the_bar_factor() -> None:
    # Fills at bars 2 (factor 1.5) and 5 (factor 2); the other bars' factors must not count.
    factor = [9.0, 9.0, 1.5, 9.0, 9.0, 2.0, 9.0, 9.0]
    costs_a, costs_b = LegCosts(fixed=0.001, slippage=0.0005), LegCosts(slippage=0.001)
    bt = _run(costs_a=costs_a, costs_b=costs_b, slippage_factor=factor)
    entry = 49 * 101 * (0.001 + 0.0005 * 1.5) + 100 * 50 * 0.001 * 1.5
    exit_ = 49 * 100 * (0.001 + 0.0005 * 2.0) + 100 * 50 * 0.001 * 2.0
    [trade] = bt.trades.to_dict("records")
    assert trade["cost"] == pytest.approx(entry + exit_, rel=1e-12)
    assert trade["pnl"] == pytest.approx(49.0 - entry - exit_, rel=1e-12)
    want = [1e4, 1e4, 1e4 - entry, 9951 - entry, 1e4 - entry, 10049 - entry - exit_]
    np.testing.assert_allclose(bt.equity, [*want, want[-1], want[-1]], rtol=1e-12)
    # A scalar factor applies to every bar: 1.0 (the default) charges fixed + slippage.
    flat = _run(costs_a=costs_a, costs_b=costs_b)
    entry1 = 49 * 101 * 0.0015 + 100 * 50 * 0.001
    exit1 = 49 * 100 * 0.0015 + 100 * 50 * 0.001
    assert flat.trades["cost"].iloc[0] == pytest.approx(entry1 + exit1, rel=1e-12)
    double = _run(costs_a=costs_a, costs_b=costs_b, slippage_factor=2.0)
    slip1 = (49 * 101 + 49 * 100) * 0.0005 + 2 * 100 * 50 * 0.001  # the slippage at factor 1
    assert double.trades["cost"].iloc[0] == pytest.approx(entry1 + exit1 + slip1, rel=1e-12)


def test_no_latency_fills_at_the_deciding_close() -> None:
    from dataclasses import replace

    bt = _run(replace(BASE, latency_bars=0))
    [trade] = bt.trades.to_dict("records")
    assert (trade["entry_bar"], trade["exit_bar"]) == (1, 4)
    assert trade["units_a"] == -50.0  # 5,000 / 100
    assert trade["pnl"] == pytest.approx(-50.0 * (101 - 100))


def test_gates_and_lot_rules_refuse_entries() -> None:
    from dataclasses import replace

    assert _run(prob=0.7).trades.empty  # prob must exceed theta1
    assert _run(risk=0.3).trades.empty  # risk must stay below theta2
    # Bars 1 and 2 both signal (|z| >= 2); each entry is refused at its fill.
    big_lot = _run(replace(BASE, lot_step_a=100.0))  # 5,000 / 101 rounds to 0 lots of 100
    assert big_lot.trades.empty and big_lot.counters["refused_lot"] == 2
    small = _run(replace(BASE, min_notional=6_000.0))
    assert small.trades.empty and small.counters["refused_notional"] == 2
    assert small.counters["signals"] == 2


def test_time_stop_and_end_of_data() -> None:
    from dataclasses import replace

    z_stays = [0.0, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5]
    bt = _run(replace(BASE, max_hold_bars=2), z=z_stays)
    first = bt.trades.iloc[0]
    assert first["exit_reason"] == "time_stop" and (first["entry_bar"], first["exit_bar"]) == (2, 5)
    assert bt.trades.iloc[-1]["exit_reason"] == "end_of_data"
    assert bt.units_a[-1] == 0.0


def test_drawdown_flattens_and_halts() -> None:
    from dataclasses import replace

    # Long the spread (z < 0) into a fall of A: 10% down on the whole account at bar 3.
    pa = [100.0, 100.0, 100.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    z = [0.0, -2.5, -2.5, -2.5, -2.5, -2.5, -2.5, -2.5]
    bt = _run(replace(BASE, dd_halt=0.1, dd_flatten=0.15), price_a=pa, z=z)
    [trade] = bt.trades.to_dict("records")
    assert trade["exit_reason"] == "dd_flatten" and trade["exit_bar"] == 4
    assert bt.counters["signals_while_halted"] > 0


def test_a_halt_is_lifted_after_its_review() -> None:
    from dataclasses import replace

    pa = [100.0, 100.0, 100.0] + [60.0] * 9
    z = [0.0] + [-2.5] * 11
    kw = {"price_a": pa, "price_b": [50.0] * 12, "z": z}
    never = _run(replace(BASE, dd_halt=0.1, dd_flatten=0.15), **kw)
    assert len(never.trades) == 1  # flattened at bar 4, halted for the rest of the run
    reviewed = _run(replace(BASE, dd_halt=0.1, dd_flatten=0.15, halt_review_bars=4), **kw)
    first, second = reviewed.trades.to_dict("records")
    assert first["exit_reason"] == "dd_flatten"
    # Halted at bar 3's close; reviewed 4 bars later: the signal at bar 7 enters at bar 8,
    # sized on the equity left, with the drawdown measured from there.
    assert (second["entry_decided_bar"], second["entry_bar"]) == (7, 8)
    assert second["units_a"] * 60.0 < first["units_a"] * 100.0  # smaller notional
    assert reviewed.counters["signals_while_halted"] == 3  # bars 4, 5, 6


def test_no_entry_fills_on_the_last_bar() -> None:
    from dataclasses import replace

    z_late = [0.0] * 6 + [2.5, 0.0]
    assert _run(z=z_late).trades.empty  # would fill at bar 7, the last, only to close there
    now = _run(replace(BASE, latency_bars=0), z=z_late)
    assert now.trades["entry_bar"].tolist() == [6]


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="price_a: prices must be finite and > 0, bar 3"):
        _run(price_a=[100.0, 100.0, 100.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="z: expected 8 values"):
        _run(z=[0.0, 1.0])
    with pytest.raises(ValueError, match="price_b: prices must be finite and > 0, bar 0"):
        _run(price_b=[np.inf] * 8)
    with pytest.raises(ValueError, match="slippage_factor: expected 8 values"):
        _run(slippage_factor=[1.0, 1.0])
    with pytest.raises(ValueError, match="slippage_factor: factors must be finite and >= 0, bar 5"):
        _run(slippage_factor=[1.0] * 5 + [np.nan] * 3)
    with pytest.raises(ValueError, match=r"costs_a\.fixed: costs must be finite and >= 0"):
        _run(costs_a=LegCosts(fixed=-0.1))
    with pytest.raises(ValueError, match=r"costs_b\.swap_per_bar: costs must be finite and >= 0"):
        _run(costs_b=LegCosts(swap_per_bar=np.nan))


def test_equity_equals_vectorbt_for_the_same_fills() -> None:
    import pandas as pd
    import vectorbt as vbt

    rng = np.random.default_rng(0)
    n = 5000
    pb = 50 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    spread = np.zeros(n)
    for i in range(1, n):
        spread[i] = 0.97 * spread[i - 1] + rng.normal(0, 0.003)
    pa = np.exp(np.log(pb) * 1.1 + 0.7 + spread)
    strategy = PairStrategy(
        capital=1e5, theta1=0.7, theta2=0.3, lot_step_a=0.01, lot_step_b=0.01, max_hold_bars=30
    )
    # Hourly bars with time-of-day slippage: x1.5 from 00:00 to 06:00, x2 from 21:00.
    hour = np.arange(n) % 24
    factor = np.where(hour < 6, 1.5, np.where(hour >= 21, 2.0, 1.0))
    costs_a, costs_b = LegCosts(fixed=0.00015, slippage=0.00005), LegCosts(0.0002, 0.0001)
    bt = simulate_pair(
        pa, pb, 1.1, spread / 0.012, rng.uniform(0.5, 1, n), rng.uniform(0, 0.5, n),
        rng.uniform(0.2, 1, n), strategy, costs_a=costs_a, costs_b=costs_b,
        slippage_factor=factor,
    )  # fmt: skip
    assert len(bt.trades) > 20
    orders = pd.DataFrame(
        {"a": np.diff(np.r_[0.0, bt.units_a]), "b": np.diff(np.r_[0.0, bt.units_b])}
    )
    pf = vbt.Portfolio.from_orders(
        pd.DataFrame({"a": pa, "b": pb}), orders, size_type="amount",
        fees=np.column_stack([0.00015 + 0.00005 * factor, 0.0002 + 0.0001 * factor]),
        init_cash=1e5, cash_sharing=True,
        group_by=True, call_seq="auto", direction="both", freq="1h",
    )  # fmt: skip
    np.testing.assert_allclose(pf.value().to_numpy(), bt.equity, rtol=1e-9, atol=0)
    assert bt.trades["pnl"].sum() == pytest.approx(bt.equity[-1] - 1e5, rel=1e-12)
