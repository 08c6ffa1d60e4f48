"""Live KPI math against independent computations (the backtest's own metrics, empyrical,
pandas, scikit-learn), and the KPIs of a small served-and-filled history end to end."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import empyrical
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_score, recall_score

from mlcore.backtest._metrics import max_drawdown as bt_max_drawdown
from mlcore.backtest._metrics import performance
from mlcore.config import AppConfig
from mlcore.errors import FatalError
from mlcore.feedback import (
    BOOK,
    FillSource,
    adverse_spread_move,
    backtest_reference,
    compute_kpis,
    flag_quality,
    gate_rates,
    land_fill,
    land_rules,
    live_performance,
    max_drawdown,
    read_kpis,
    sharpe_ratio,
    trade_stats,
)
from mlcore.feedback._kpis import daily_equity, years_spanned
from mlcore.registry import database_url, make_engine

from ._feedback_support import VERSION, fill_doc, register_version, signal, store

_returns = st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=2, max_size=60)


@settings(max_examples=200, deadline=None)
@given(_returns)
def test_sharpe_matches_empyrical(r: list[float]) -> None:
    got = sharpe_ratio(r, 252.0)
    want = empyrical.sharpe_ratio(np.array(r), annualization=252)
    if got is None:
        assert not np.isfinite(want) or np.std(r, ddof=1) < 1e-12
    elif np.std(r, ddof=1) > 1e-9:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1.0, 1e7, allow_nan=False), min_size=1, max_size=60))
def test_max_drawdown_is_the_backtests(equity: list[float]) -> None:
    capital = 1e6
    assert max_drawdown(equity, capital) == pytest.approx(bt_max_drawdown(equity, capital))
    path = pd.Series([capital, *equity])
    assert max_drawdown(equity, capital) == pytest.approx(float(-(path / path.cummax() - 1).min()))


_trades = st.lists(
    st.tuples(st.integers(0, 40 * 86_400), st.floats(-5e4, 5e4, allow_nan=False)), max_size=30
)


@settings(max_examples=150, deadline=None)
@given(_trades, st.integers(3, 40))
def test_trade_stats_match_the_backtest_performance(
    trades: list[tuple[int, float]], days: int
) -> None:
    capital = 1e6
    t0 = 1_700_000_000 * 10**9
    bars = t0 + np.arange(days * 24) * 3600 * 10**9
    exits = np.array([t0 + s * 10**9 for s, _ in trades], dtype=np.int64)
    exits = exits[exits <= bars[-1]]
    pnl = np.array([p for s, p in trades if t0 + s * 10**9 <= bars[-1]])
    got = trade_stats(bars, exits, pnl, capital)
    # Independently: pandas daily equity, then the backtest's performance().
    day = pd.to_datetime(bars).normalize().unique()
    exit_day = pd.to_datetime(exits).normalize()
    eq = np.array([capital + pnl[exit_day <= d].sum() for d in day])
    returns = eq / np.r_[capital, eq[:-1]] - 1
    years = years_spanned(int(bars[0]), int(bars[-1]))
    want = performance(returns, capital, pd.DataFrame({"pnl": pnl}), years,
                       len(returns) / years, 0.0)  # fmt: skip
    assert np.allclose(daily_equity(bars, exits, pnl, capital), eq)
    assert got.n_trades == want["trades"] and got.trades_per_year == pytest.approx(
        want["trades_per_year"]
    )
    assert got.max_drawdown == pytest.approx(want["max_drawdown"], abs=1e-12)
    assert got.win_rate == want["win_rate"]
    if want["sharpe"] is None or got.sharpe is None:
        assert (
            got.sharpe is None or not math.isfinite(got.sharpe) or np.std(returns, ddof=1) < 1e-12
        )
    else:
        assert got.sharpe == pytest.approx(want["sharpe"], rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=50))
def test_gate_rates_count_what_they_say(scores: list[tuple[float, float]]) -> None:
    prob = [p for p, _ in scores]
    risk = [r for _, r in scores]
    got = gate_rates(prob, risk, [0.55] * len(prob), [0.6] * len(prob))
    passed = [(p, r) for p, r in scores if p > 0.55]
    assert got.candidates == len(scores)
    if passed:
        refused = sum(r >= 0.6 for _, r in passed) / len(passed)
        assert got.ai2_refusal_rate == pytest.approx(refused)
        assert got.theta2_pass_rate == pytest.approx(1 - refused)
    else:
        assert got.ai2_refusal_rate is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=50))
def test_flag_quality_matches_sklearn(pairs: list[tuple[bool, bool]]) -> None:
    flagged, adverse = [f for f, _ in pairs], [a for _, a in pairs]
    got = flag_quality(flagged, adverse)
    if any(flagged):
        assert got.precision == pytest.approx(precision_score(adverse, flagged, zero_division=0))
    if any(adverse):
        assert got.recall == pytest.approx(recall_score(adverse, flagged))


def test_adverse_spread_move_sign() -> None:
    # Long the spread (side +1): A falls 10% with B flat: the spread moved against it.
    assert adverse_spread_move(1, 1.0, (1.0, 1.0), (0.9, 1.0)) == pytest.approx(-math.log(0.9))
    assert adverse_spread_move(-1, 1.0, (1.0, 1.0), (0.9, 1.0)) == pytest.approx(math.log(0.9))


def test_kpis_of_a_served_and_filled_history(cfg: AppConfig) -> None:
    url = database_url(cfg)
    register_version(cfg, url)
    engine = make_engine(url)
    sigs = [signal(bar=0, z=-2.5), signal(bar=1, action="hold", risk=0.7, reason="holding"),
            signal(bar=3, action="exit", side=-1, prices=(1.12, 1.30), z=-0.2),
            signal(bar=4, action="hold", prob=0.8, risk=0.9, z=2.4),  # refused by AI2
            signal(bar=5, action="entry", side=-1, prices=(1.12, 1.30), z=2.6),
            signal(bar=30, action="exit", side=1, prices=(1.13, 1.29), z=0.1)]  # fmt: skip
    store(engine, *sigs)
    now = datetime(2025, 1, 9, tzinfo=UTC)
    for i, s in enumerate(s for s in sigs if s["metadata"]["action"] != "hold"):
        raw = json.dumps(fill_doc(s, fill_id=f"F{i}")).encode()
        land_fill(engine, raw, FillSource.FILE, f"f{i}", land_rules(cfg), now)
    perf = live_performance(engine, model_version=VERSION, pair_id="EUR_GBP", since=None)
    # Trade 1: long A 10,000 1.10 -> 1.12, short B 8,000 flat: +200 - 4 fees of 0.5.
    # Trade 2: short A 1.12 -> 1.13 (-100), long B 1.30 -> 1.29 (-80): -180 - 2.
    assert perf.n_trades == 2 and perf.n_bars == 6
    assert perf.pnl_usd == pytest.approx(198.0 - 182.0)
    assert perf.win_rate == 0.5
    capital = 1_000_000.0 / 3
    assert perf.max_drawdown == pytest.approx(182.0 / (capital + 198.0))
    kpis = compute_kpis(cfg, engine, now)
    assert {(k.pair_id, k.window_days) for k in kpis} == {
        (p, d) for p in ("EUR_GBP", BOOK) for d in cfg.analytics.kpi.windows_days
    }
    k7 = next(k for k in kpis if k.pair_id == "EUR_GBP" and k.window_days == 7)
    # Candidates: flat bars, AI1 asked, |z| >= 2: bars 0, 4, 5; bar 4 refused by AI2.
    assert k7.gates.candidates == 3 and k7.gates.ai2_refusal_rate == pytest.approx(1 / 3)
    assert k7.flags.trades == 2 and k7.flags.flagged == 1  # bar 1's flag, inside trade 1
    assert k7.costs.fills == 4 and k7.slo.fill_latency_p50_seconds == pytest.approx(2.0)
    assert k7.gaps is None  # no backtest.json for this version
    assert {(k.pair_id, k.window_days) for k in read_kpis(engine)} == {
        (k.pair_id, k.window_days) for k in kpis
    }
    bt = cfg.paths.reports / "backtest" / VERSION / "backtest.json"
    bt.parent.mkdir(parents=True)
    bt.write_text(json.dumps({"test": {"sharpe": 1.5, "max_drawdown": 0.1, "win_rate": 0.6,
                                       "trades_per_year": 50}}))  # fmt: skip
    ref = backtest_reference(cfg, VERSION)
    assert (ref.sharpe, ref.max_drawdown, ref.win_rate, ref.trades_per_year) == (1.5, 0.1, 0.6, 50)
    later = compute_kpis(cfg, engine, now + timedelta(hours=1))
    k = next(k for k in later if k.pair_id == "EUR_GBP" and k.window_days == 7)
    assert k.gaps is not None and k.gaps.win_rate == pytest.approx(0.5 - 0.6)


def test_a_version_served_unregistered_is_skipped_unless_named(cfg: AppConfig) -> None:
    url = database_url(cfg)
    register_version(cfg, url)
    engine = make_engine(url)
    store(engine, signal(bar=0), signal(bar=1, version="20250202_0000_def5678"))
    kpis = compute_kpis(cfg, engine, datetime(2025, 1, 9, tzinfo=UTC))
    assert {k.model_version for k in kpis} == {VERSION}
    with pytest.raises(FatalError, match="FEEDBACK_VERSION_UNKNOWN"):
        compute_kpis(cfg, engine, datetime(2025, 1, 9, tzinfo=UTC), "20250202_0000_def5678")
