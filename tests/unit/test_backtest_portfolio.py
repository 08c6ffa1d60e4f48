"""The account: its equity path over pairs on different clocks, and its drawdown stops acting on
every pair (halt: no entry anywhere; flatten: every pair closes), reviewed after a while."""

from __future__ import annotations

import numpy as np
import pytest

from mlcore.backtest import (
    AccountRules,
    LegCosts,
    PairBars,
    PairSetup,
    PairStrategy,
    account_path,
    account_stops,
    run_portfolio,
)

H = 3_600 * 10**9


def test_account_path_counts_each_pair_at_its_latest_bar() -> None:
    a = _bars("A", np.array([0, 2, 4]) * H, [100.0] * 3, [0.0] * 3)
    b = _bars("B", np.array([1, 2, 3]) * H, [100.0] * 3, [0.0] * 3)
    ts, path = account_path(
        [a, b], {"A": np.array([10.0, 11.0, 12.0]), "B": np.array([20.0, 21.0, 22.0])},
        {"A": 10.0, "B": 20.0},
    )  # fmt: skip
    assert ts.tolist() == [0, H, 2 * H, 3 * H, 4 * H]
    # B holds its capital before its first bar; each pair keeps its last equity between bars.
    assert path.tolist() == [30.0, 30.0, 32.0, 33.0, 34.0]


def test_account_stops_by_hand() -> None:
    rules = AccountRules(halt=0.10, flatten=0.12, review_ns=3)
    ts = np.arange(9)
    equity = np.array([100.0, 95.0, 89.0, 88.0, 90.0, 90.0, 85.0, 84.0, 70.0])
    # 89 is 11% down: halt until 2 + 3 = 5; 88 is 12% down: flatten from 3. Reviewed at 5 with
    # the peak reset to 90; 84 is 6.7% under it, 70 is 22%: a new stop at 8, straight to flatten.
    assert account_stops(ts, equity, 100.0, rules) == [(2, 5, 1.0), (3, 5, 2.0), (8, 11, 2.0)]
    assert account_stops(ts, np.full(9, 100.0), 100.0, rules) == []


def _bars(pid: str, ts: np.ndarray, pa: list[float], z: list[float]) -> PairBars:
    n = len(ts)
    return PairBars(
        pair_id=pid, ts_ns=np.asarray(ts, dtype=np.int64), price_a=np.asarray(pa),
        price_b=np.full(n, 50.0), beta=np.full(n, 1.0), z=np.asarray(z), prob=np.full(n, 0.9),
        risk=np.full(n, 0.1), scale=np.ones(n), atr_a=np.ones(n), atr_b=np.ones(n),
        slippage=np.ones(n), fx_blocked=np.zeros(n, dtype=bool),
    )  # fmt: skip


def _setup(pid: str) -> PairSetup:
    # Pair stops far away: only the account's act here.
    strategy = PairStrategy(capital=10_000.0, theta1=0.7, theta2=0.3, dd_halt=0.9, dd_flatten=0.95)
    return PairSetup(pid, strategy, LegCosts(), LegCosts())


def test_account_stops_act_on_every_pair() -> None:
    ts = np.arange(12) * H
    # A: long the spread at bar 2 (decided at 1, 50 units of A), then leg A falls: the account
    # (20,000) loses 2,100 = 10.5% at bar 3 -> halt; 2,600 = 13% at bar 4 -> flatten.
    a = _bars("A", ts, [100.0, 100.0, 100.0, 58.0, 48.0] + [48.0] * 7, [0.0] + [-2.5] * 11)
    # B: a signal at every bar from 3 on, which only the account's stops hold back.
    b = _bars("B", ts, [100.0] * 12, [0.0, 0.0, 0.0] + [2.5] * 9)
    setups = {"A": _setup("A"), "B": _setup("B")}
    free = run_portfolio([a, b], setups, 0.7, 0.3)
    assert free.metrics["account_stops"] == []
    assert free.trades.loc[free.trades["pair_id"] == "B", "entry_decided_bar"].iloc[0] == 3
    rules = AccountRules(halt=0.10, flatten=0.12, review_ns=5 * H)
    run = run_portfolio([a, b], setups, 0.7, 0.3, account=rules)
    kinds = [s["kind"] for s in run.metrics["account_stops"]]
    assert kinds == ["halt", "flatten"]
    trades_a = run.trades[run.trades["pair_id"] == "A"].to_dict("records")
    # Flatten decided at bar 4's close, filled at bar 5 (latency 1).
    assert trades_a[0]["exit_reason"] == "account_flatten" and trades_a[0]["exit_bar"] == 5
    # B's signals at bars 3..7 fall in the halt (from bar 3 until 3 + 5 hours): its first entry
    # is decided at bar 8, when the stop has been reviewed.
    first_b = run.trades[run.trades["pair_id"] == "B"]["entry_decided_bar"].min()
    assert first_b == 8
    assert run.metrics["signals_while_halted"] >= 5
    # Every bar is watched: 13% at bar 4's close, whatever the daily closes show.
    assert run.metrics["max_drawdown_bar_level"] == pytest.approx(0.13)
    assert run.metrics["max_drawdown_bar_level"] >= run.metrics["max_drawdown"]
    # Money still adds up.
    assert run.daily.iloc[-1] == pytest.approx(20_000.0 + run.trades["pnl_usd"].sum(), rel=1e-12)
