"""The universe as one account: each pair trades its equal share of the capital with its own
drawdown stops (dd_policy.yaml ``pair``); the account is the sum of the pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mlcore.backtest import _kernel as k
from mlcore.backtest._engine import PairBacktest, PairStrategy, simulate_pair
from mlcore.backtest._inputs import PairBars
from mlcore.backtest._metrics import daily_equity, max_drawdown, performance
from mlcore.config import TIMEFRAMES, AppConfig
from mlcore.errors import MissingInputError
from mlcore.execution import LegCosts, leg_costs

_DAY_NS = 86_400 * 10**9
_YEAR_DAYS = 365.25


@dataclass(frozen=True)
class PairSetup:
    """A pair's fixed trading rules and costs (θ is given per run)."""

    pair_id: str
    strategy: PairStrategy
    costs_a: LegCosts
    costs_b: LegCosts
    margin_a: float = 0.0  # margin as a share of each leg's notional
    margin_b: float = 0.0


def pair_setups(
    cfg: AppConfig, timeframe: str, pair_ids: set[str] | None = None
) -> dict[str, PairSetup]:
    """Rules of the universe's pairs (or ``pair_ids``) from universe.yaml, cost_table.yaml,
    dd_policy.yaml, core_policy.yaml (entry/exit z) and backtest_policy.yaml; the capital is
    split equally over them."""
    bt = cfg.backtest
    pairs = [p for p in cfg.universe.pairs if pair_ids is None or p.pair_id in pair_ids]
    if not pairs:
        raise MissingInputError(
            "UNIVERSE_PAIR_UNKNOWN",
            f"none of the pairs {sorted(pair_ids or [])} is in universe.yaml "
            f"{[p.pair_id for p in cfg.universe.pairs]}",
        )
    capital = bt.account.capital_usd / len(pairs)
    ai1 = cfg.core.labels_at(timeframe).ai1
    ex = bt.execution_at(timeframe)
    out = {}
    for p in pairs:
        ta, tb = cfg.universe.trading[p.leg_a], cfg.universe.trading[p.leg_b]
        strategy = PairStrategy(
            capital=capital, theta1=cfg.core.theta1_initial, theta2=cfg.core.theta2_initial,
            entry_z=ai1.entry_z, exit_z=ai1.exit_z, max_hold_bars=ex.max_hold_bars,
            dd_halt=cfg.drawdown.pair.halt, dd_flatten=cfg.drawdown.pair.flatten,
            lot_step_a=ta.lot_step, lot_step_b=tb.lot_step, min_lot_a=ta.min_lot,
            min_lot_b=tb.min_lot, min_notional=max(ta.min_notional_usd, tb.min_notional_usd),
            risk_fraction=bt.account.risk_fraction, latency_bars=ex.latency_bars,
            halt_review_bars=ex.halt_review_bars,
        )  # fmt: skip
        seconds = TIMEFRAMES[timeframe]
        out[p.pair_id] = PairSetup(
            p.pair_id, strategy, leg_costs(cfg.costs, p.leg_a, seconds),
            leg_costs(cfg.costs, p.leg_b, seconds), ta.margin_rate, tb.margin_rate,
        )  # fmt: skip
    return out


@dataclass
class PortfolioRun:
    """One backtest of the universe at one θ."""

    theta: tuple[float, float]
    pairs: dict[str, PairBacktest]
    pair_daily: dict[str, pd.Series]  # on the account's days: capital before a pair's first bar
    daily: pd.Series
    returns: np.ndarray
    trades: pd.DataFrame
    metrics: dict[str, Any]


def _trades_frame(bars: PairBars, bt: PairBacktest) -> pd.DataFrame:
    t = bt.trades.copy()
    t.insert(0, "pair_id", bars.pair_id)
    for col in ("entry_decided_bar", "entry_bar", "exit_bar"):
        t[col.replace("_bar", "_ts")] = pd.to_datetime(bars.ts_ns[t[col].to_numpy()], utc=True)
    t["bars_held"] = t["exit_bar"] - t["entry_bar"]
    t = t.rename(columns={"pnl": "pnl_usd", "cost": "cost_usd", "carry": "carry_usd"})
    return t


def _traded_notional(t: pd.DataFrame) -> float:
    ua, ub = t["units_a"].abs(), t["units_b"].abs()
    entry = ua * t["entry_price_a"] + ub * t["entry_price_b"]
    exit_ = ua * t["exit_price_a"] + ub * t["exit_price_b"]
    return float((entry + exit_).sum())


@dataclass(frozen=True)
class AccountRules:
    """The account-level drawdown stops (``dd_policy.yaml: portfolio``): past ``halt`` from
    the account's peak no pair enters; past ``flatten`` every pair also closes. Trading
    resumes ``review_ns`` after the stop began, with the peak reset there."""

    halt: float
    flatten: float
    review_ns: int


def account_rules(cfg: AppConfig, timeframe: str) -> AccountRules:
    """The account's stops from dd_policy.yaml, reviewed after ``halt_review_bars`` bars."""
    bars = cfg.backtest.execution_at(timeframe).halt_review_bars
    return AccountRules(
        cfg.drawdown.portfolio.halt, cfg.drawdown.portfolio.flatten,
        bars * TIMEFRAMES[timeframe] * 1_000_000_000,
    )  # fmt: skip


def account_path(
    bars: list[PairBars], equity: dict[str, np.ndarray], capital: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(every bar time of any pair, the account's equity then): each pair counts with its
    latest equity at or before that time, or its capital before its first bar."""
    ts = np.unique(np.concatenate([b.ts_ns for b in bars]))
    total = np.zeros(len(ts))
    for b in bars:
        at = np.searchsorted(b.ts_ns, ts, side="right") - 1
        total += np.where(at >= 0, equity[b.pair_id][np.maximum(at, 0)], capital[b.pair_id])
    return ts, total


def account_stops(
    ts: np.ndarray, equity: np.ndarray, capital: float, rules: AccountRules
) -> list[tuple[int, int, float]]:  # fmt: skip
    """(start, end, control) of each account stop along an equity path: control 1 (halt) or 2
    (flatten; a halt that deepens past flatten adds a flatten from that bar)."""
    stops: list[tuple[int, int, float]] = []
    peak, until, level = capital, -1, 0.0
    for t, e in zip(ts.tolist(), equity.tolist(), strict=True):
        if level and t >= until:
            level, peak = 0.0, e  # reviewed: trading resumes, the drawdown measured afresh
        peak = max(peak, e)
        dd = 1.0 - e / peak if peak > 0 else 0.0
        if not level and dd >= rules.halt:
            until = t + rules.review_ns
            level = k.CONTROL_FLATTEN if dd >= rules.flatten else k.CONTROL_HALT
            stops.append((t, until, level))
        elif level == k.CONTROL_HALT and dd >= rules.flatten:
            level = k.CONTROL_FLATTEN
            stops.append((t, until, level))
    return stops


def _simulate(
    b: PairBars, s: PairSetup, theta1: float, theta2: float, cost_multiplier: float,
    latency_bars: int | None, control: np.ndarray,
) -> PairBacktest:  # fmt: skip
    strategy = replace(s.strategy, theta1=theta1, theta2=theta2)
    if latency_bars is not None:
        strategy = replace(strategy, latency_bars=latency_bars)
    return simulate_pair(
        b.price_a, b.price_b, b.beta, b.z, b.entry_prob(), b.risk, b.scale, strategy,
        costs_a=s.costs_a.scaled(cost_multiplier), costs_b=s.costs_b.scaled(cost_multiplier),
        slippage_factor=b.slippage, control=control,
    )  # fmt: skip


_MAX_STOPS = 1_000


def run_portfolio(
    bars: list[PairBars], setups: dict[str, PairSetup], theta1: float, theta2: float, *,
    account: AccountRules | None = None, cost_multiplier: float = 1.0,
    latency_bars: int | None = None,
) -> PortfolioRun:  # fmt: skip
    """Backtest every pair at (θ1, θ2) over its bars and add them up into the account.

    With ``account`` rules, the account's stops act on every pair. A stop changes nothing before
    it begins, so they are found in time order: run, take the earliest stop not yet applied,
    apply it to every pair's controls, run again, until no new one appears."""
    if not bars:
        raise ValueError("no pair has bars in this window")
    controls = {b.pair_id: np.zeros(len(b.ts_ns)) for b in bars}
    pair_capital = {b.pair_id: setups[b.pair_id].strategy.capital for b in bars}
    applied: list[tuple[int, int, float]] = []
    path = np.zeros(0)
    for _ in range(_MAX_STOPS + 1):
        runs = {
            b.pair_id: _simulate(b, setups[b.pair_id], theta1, theta2, cost_multiplier,
                                 latency_bars, controls[b.pair_id])
            for b in bars
        }  # fmt: skip
        ts, path = account_path(bars, {pid: r.equity for pid, r in runs.items()}, pair_capital)
        if account is None:
            break
        new = [x for x in account_stops(ts, path, sum(pair_capital.values()), account)
               if x not in applied]  # fmt: skip
        if not new:
            break
        start, end, level = new[0]
        applied.append(new[0])
        for b in bars:
            window = (b.ts_ns >= start) & (b.ts_ns < end)
            controls[b.pair_id][window] = np.maximum(controls[b.pair_id][window], level)
    else:
        raise ValueError(f"more than {_MAX_STOPS} account stops: check dd_policy.yaml")
    pair_daily: dict[str, pd.Series] = {}
    frames = []
    capital = 0.0
    margin_use = 0.0
    for b in bars:
        s = setups[b.pair_id]
        bt = runs[b.pair_id]
        used = (
            np.abs(bt.units_a) * b.price_a * s.margin_a
            + np.abs(bt.units_b) * b.price_b * s.margin_b
        )
        margin_use = max(margin_use, float(np.max(used / bt.equity)) if len(used) else 0.0)
        pair_daily[b.pair_id] = daily_equity(b.ts_ns, bt.equity)
        frames.append(_trades_frame(b, bt))
        capital += s.strategy.capital
    days = pd.DatetimeIndex(sorted(set().union(*(d.index for d in pair_daily.values()))))
    # A pair with no bar yet on a day still holds its capital; after its last bar, its equity.
    aligned = {
        pid: d.reindex(days).ffill().fillna(setups[pid].strategy.capital)
        for pid, d in pair_daily.items()
    }
    daily = sum(aligned.values(), pd.Series(0.0, index=days))
    pair_daily = aligned
    trades = pd.concat(frames, ignore_index=True).sort_values(
        ["entry_ts", "pair_id"], kind="stable", ignore_index=True
    )
    first = min(int(b.ts_ns[0]) for b in bars if len(b.ts_ns))
    last = max(int(b.ts_ns[-1]) for b in bars if len(b.ts_ns))
    years = max((last - first) / _DAY_NS, 1.0) / _YEAR_DAYS
    values = daily.to_numpy(dtype=np.float64)
    returns = values / np.r_[capital, values[:-1]] - 1.0
    metrics: dict[str, Any]
    if len(returns) >= 2:
        metrics = performance(
            returns, capital, trades.rename(columns={"pnl_usd": "pnl"}), years,
            len(returns) / years, _traded_notional(trades),
        )  # fmt: skip
    else:
        metrics = {"days": len(returns), "trades": len(trades), "annual_return": None,
                   "sharpe": None, "max_drawdown": max_drawdown(values, capital)}  # fmt: skip
    stops = trades["exit_reason"].isin(["time_stop", "dd_flatten"]).to_numpy()
    metrics["stop_share"] = float(stops.mean()) if len(trades) else 0.0
    metrics["years"] = years
    # The stops watch every bar; the daily closes above can hide a deeper fall within a day.
    metrics["max_drawdown_bar_level"] = max_drawdown(path, capital)
    metrics["account_stops"] = [
        {"start": str(pd.Timestamp(a, tz="UTC")), "end": str(pd.Timestamp(e, tz="UTC")),
         "kind": "flatten" if lv == k.CONTROL_FLATTEN else "halt"}
        for a, e, lv in applied
    ]  # fmt: skip
    metrics["max_margin_use"] = margin_use  # margin held / the pair's equity, worst bar
    metrics["capital_usd"] = capital
    metrics["final_equity_usd"] = float(values[-1]) if len(values) else capital
    metrics["refused_entries"] = {
        k: sum(r.counters[k] for r in runs.values()) for k in ("refused_lot", "refused_notional")
    }
    metrics["signals_while_halted"] = sum(r.counters["signals_while_halted"] for r in runs.values())
    return PortfolioRun((theta1, theta2), runs, pair_daily, daily, returns, trades, metrics)


def finite_or(value: Any, default: float) -> float:
    """``value`` as a float, or ``default`` when it is None or not finite."""
    if value is None:
        return default
    f = float(value)
    return f if math.isfinite(f) else default
