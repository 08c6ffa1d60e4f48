"""The report's computed tables against hand computations and independent pandas sums."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.backtest._report_format import pct, threshold_text, usd, with_unit
from mlcore.backtest._report_tables import (
    monthly_returns,
    monthly_table,
    pair_breakdown,
    pairs_table,
    trades_listing,
    trades_table,
)


def test_monthly_returns_by_hand() -> None:
    days = pd.to_datetime(
        ["2023-12-28", "2023-12-29", "2024-01-02", "2024-01-03", "2024-03-01"], utc=True
    )
    r = pd.Series([0.10, -0.05, 0.02, 0.03, -0.01], index=days)
    out = monthly_returns(r)
    assert list(out.index) == [2023, 2024]
    # Dec 2023: 1.10 x 0.95 - 1 = 0.045; Jan 2024: 1.02 x 1.03 - 1 = 0.0506; Mar: -0.01.
    assert out.loc[2023, 12] == pytest.approx(0.045)
    assert out.loc[2024, 1] == pytest.approx(0.0506)
    assert out.loc[2024, 3] == pytest.approx(-0.01)
    assert np.isnan(out.loc[2024, 2]) and np.isnan(out.loc[2023, 1])
    assert out.loc[2023, "year"] == pytest.approx(0.045)
    assert out.loc[2024, "year"] == pytest.approx(1.0506 * 0.99 - 1)
    text = monthly_table(out)
    assert "<th>Jan (%)</th>" in text and "<th>year total (%)</th>" in text
    assert '<td class="num pos">5.06 %</td>' in text
    assert '<td class="num neg total">-1.00 %</td>' not in text  # 2024's total is positive
    assert '<td class="num pos total">4.01 %</td>' in text
    assert monthly_returns(pd.Series(dtype=np.float64)).empty


def _trades(rng: np.random.Generator, n: int) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    entry = start + pd.to_timedelta(np.sort(rng.integers(0, 10_000, n)), unit="h")
    return pd.DataFrame({
        "pair_id": rng.choice(["AAA_BBB", "CCC_DDD", "EEE_FFF"], n),
        "entry_ts": entry, "exit_ts": entry + pd.to_timedelta(rng.integers(1, 50, n), unit="h"),
        "side": rng.choice([1, -1], n), "bars_held": rng.integers(1, 50, n),
        "pnl_usd": rng.normal(5, 100, n), "cost_usd": rng.uniform(1, 4, n),
        "carry_usd": rng.uniform(0, 1, n), "exit_reason": rng.choice(["exit_z", "time_stop"], n),
    })  # fmt: skip


def test_pair_breakdown_against_pandas() -> None:
    rng = np.random.default_rng(3)
    trades = _trades(rng, 300)
    days = pd.date_range("2024-01-01", periods=420, freq="D", tz="UTC")
    capital = 10_000.0
    equity = {}
    for pid, t in trades.groupby("pair_id"):
        # Daily equity: the capital plus the P&L of the trades closed by each day's end.
        closed = t.set_index(t["exit_ts"].dt.normalize())["pnl_usd"].groupby(level=0).sum()
        equity[str(pid)] = capital + closed.reindex(days, fill_value=0.0).cumsum()
    out = pair_breakdown(trades, equity)
    g = trades.groupby("pair_id")
    expected = pd.DataFrame({
        "trades": g.size().astype(float), "win_rate": g["pnl_usd"].apply(lambda s: (s > 0).mean()),
        "pnl_usd": g["pnl_usd"].sum(), "avg_bars_held": g["bars_held"].mean(),
        "cost_usd": g["cost_usd"].sum(), "carry_usd": g["carry_usd"].sum(),
    })  # fmt: skip
    pd.testing.assert_frame_equal(out[expected.columns], expected, check_names=False)
    for pid, e in equity.items():
        assert out.loc[pid, "return"] == pytest.approx(e.iloc[-1] / capital - 1)
        path = np.r_[capital, e.to_numpy()]
        dd = 1 - path / np.maximum.accumulate(path)
        assert out.loc[pid, "max_drawdown"] == pytest.approx(dd.max())
    text = pairs_table(out)
    assert "<th>P&amp;L (USD)</th>" in text and "<th>avg holding (bars)</th>" in text
    assert f">{usd(expected.loc['AAA_BBB', 'pnl_usd'])}<" in text
    assert " bars</td>" in text and " trades</td>" in text


def test_a_pair_without_trades_shows_zero_trades() -> None:
    days = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    trades = _trades(np.random.default_rng(1), 5).assign(pair_id="AAA_BBB")
    out = pair_breakdown(trades, {"ZZZ_YYY": pd.Series(1_000.0, index=days)})
    assert out.loc["ZZZ_YYY", "trades"] == 0 and out.loc["ZZZ_YYY", "pnl_usd"] == 0
    assert out.loc["ZZZ_YYY", "return"] == 0 and np.isnan(out.loc["ZZZ_YYY", "win_rate"])


def test_trades_listing_is_capped_and_labelled() -> None:
    trades = _trades(np.random.default_rng(2), 250).sample(frac=1.0, random_state=0)
    listing = trades_listing(trades, limit=200)
    assert len(listing) == 200
    assert listing["entry_ts"].is_monotonic_increasing
    text = trades_table(listing.head(3))
    assert "<th>holding (bars)</th>" in text and "<th>P&amp;L (USD)</th>" in text
    assert " UTC</td>" in text and " bars</td>" in text and " USD</td>" in text
    assert "spread" in text


def test_units() -> None:
    assert pct(0.0512) == "5.12 %" and usd(-1234.5) == "-1,234.50 USD"
    assert with_unit(149.6, "trades/year") == "149.6 trades/year"
    assert with_unit(None, "%") == "—"
    assert threshold_text("max_drawdown", "< 0.15") == "< 15.00 %"
    assert threshold_text("sharpe", "> 1.0") == "> 1.0"
