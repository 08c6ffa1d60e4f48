"""Backtest metrics equal empyrical-reloaded's on the same daily returns (to 1e-12)."""

from __future__ import annotations

import empyrical as ep
import numpy as np
import pandas as pd
import pytest

from mlcore.backtest._metrics import daily_equity, daily_returns, max_drawdown, performance

TRADES = pd.DataFrame({"pnl": [10.0, -5.0, 20.0, -1.0]})


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("periods", [252, 365])
def test_ratios_equal_empyrical(seed: int, periods: int) -> None:
    r = np.random.default_rng(seed).normal(0.0005, 0.01, 500)
    m = performance(r, 1e5, TRADES, years=2.0, periods_per_year=periods, traded_notional=4e6)
    kw = {"annualization": periods}
    assert m["sharpe"] == pytest.approx(ep.sharpe_ratio(r, **kw), rel=1e-12)
    assert m["sortino"] == pytest.approx(ep.sortino_ratio(r, **kw), rel=1e-12)
    assert m["annual_return"] == pytest.approx(ep.annual_return(r, **kw), rel=1e-12)
    # empyrical measures drawdowns from the first day's close; ours from the starting capital:
    # a zero return in front makes the two the same.
    padded = np.r_[0.0, r]
    assert m["max_drawdown"] == pytest.approx(-ep.max_drawdown(padded), rel=1e-12)
    assert m["calmar"] == pytest.approx(m["annual_return"] / -ep.max_drawdown(padded), rel=1e-12)
    assert m["trades_per_year"] == 2.0 and m["win_rate"] == 0.5
    assert m["expectancy_per_trade"] == 6.0 and m["turnover_per_year"] == 20.0


def test_daily_series_and_drawdown_by_hand() -> None:
    ts = (
        pd.DatetimeIndex(
            ["2024-01-01 10:00", "2024-01-01 23:00", "2024-01-02 05:00", "2024-01-03 01:00"],
            tz="UTC",
        )
        .as_unit("ns")
        .asi8
    )
    daily = daily_equity(ts, [101.0, 99.0, 110.0, 88.0])
    assert daily.tolist() == [99.0, 110.0, 88.0]
    np.testing.assert_allclose(daily_returns(daily, 100.0), [-0.01, 110 / 99 - 1, -0.2])
    assert max_drawdown([99.0, 110.0, 88.0], 100.0) == pytest.approx(0.2)
    assert max_drawdown([99.0], 100.0) == pytest.approx(0.01)  # the first day counts


def test_undefined_ratios_are_none_and_bad_input_refused() -> None:
    flat = np.zeros(10)
    m = performance(flat, 1e5, TRADES.iloc[:0], years=1.0, periods_per_year=252,
                    traded_notional=0.0)  # fmt: skip
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None
    assert m["win_rate"] is None and m["trades"] == 0
    with pytest.raises(ValueError, match="at least 2 daily returns"):
        performance([0.1], 1e5, TRADES, 1.0, 252, 0.0)
