"""The backtest HTML report: self-contained, deterministic, escaped, and robust to empty inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from mlcore.backtest._report import NO_DATA, ReportInputs, fmt, render_report, write_report
from mlcore.errors import FatalError

HEADINGS = (
    "1. Adoption decision",
    "2. The model against the plain z-score rule",
    "3. Summary metrics",
    "4. Monthly returns",
    "5. Per-pair breakdown",
    "6. Equity",
    "7. Drawdown (underwater)",
    "8. Trade distribution",
    "9. Trades",
    "10. θ search",
    "11. Calibration",
    "12. Feature importance",
    "13. Stress scenarios",
    "14. Lineage",
)


def example_inputs(seed: int = 7) -> ReportInputs:
    """A realistic run: 3 pairs over two years, a 9×9 θ lattice, two models."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2023-01-02", periods=504, freq="D", tz="UTC")
    pairs = ["KO-PEP", "XOM-CVX", "V-MA"]
    pair_equity = {
        p: pd.Series(
            100_000.0 * np.cumprod(1 + rng.normal(0.0004 + 0.0002 * i, 0.006, len(days))),
            index=days,
        )
        for i, p in enumerate(pairs)
    }
    portfolio = sum(pair_equity.values())
    assert isinstance(portfolio, pd.Series)
    n = 380
    trades = pd.DataFrame(
        {
            "pair_id": rng.choice(pairs, n),
            "pnl_usd": rng.standard_t(4, n) * 350 + 40,
            "exit_reason": rng.choice(["take_profit", "stop_loss", "time_stop", "signal"], n),
            "bars_held": rng.integers(1, 400, n),
        }
    )
    t1, t2 = np.meshgrid(np.linspace(0.5, 0.9, 9), np.linspace(0.05, 0.45, 9))
    objective = 1.4 - 4 * (t1 - 0.7) ** 2 - 6 * (t2 - 0.2) ** 2 + rng.normal(0, 0.03, t1.shape)
    theta_grid = pd.DataFrame(
        {"theta1": t1.ravel(), "theta2": t2.ravel(), "objective": objective.ravel()}
    )
    bins = np.linspace(0.05, 0.95, 10)
    calibration = {
        m: {"mean_predicted": bins.tolist(), "fraction_positive": fraction.tolist()}
        for m, fraction in (("lightgbm", bins * 0.9 + 0.04), ("xgboost", bins**1.2))
    }
    features = [f"zscore_{w}" for w in (20, 60, 120)] + [f"feat_{i:02d}" for i in range(25)]
    importance = {
        m: dict(zip(features, rng.dirichlet(np.ones(len(features))), strict=True))
        for m in ("lightgbm", "xgboost")
    }
    return ReportInputs(
        title="Backtest report — pairs v2024.06",
        decision="adopt",
        gates=[
            {"gate": "dsr", "value": 0.97, "threshold": ">= 0.95", "passed": True, "reason": "ok"},
            {"gate": "pbo", "value": 0.18, "threshold": "<= 0.30", "passed": True, "reason": "ok"},
            {
                "gate": "max_drawdown",
                "value": 0.11,
                "threshold": "<= 0.20",
                "passed": True,
                "reason": "within limit",
            },
            {
                "gate": "sharpe_vs_current",
                "value": float("nan"),
                "threshold": "> current",
                "passed": True,
                "reason": "no current model",
            },
        ],
        summary={
            "annual_return": 0.142,
            "sharpe": 1.61,
            "sortino": 2.35,
            "max_drawdown": 0.113,
            "calmar": 1.26,
            "trades_per_year": 190.0,
            "win_rate": 0.54,
            "expectancy_usd": 41.7,
            "turnover": 23.4,
            "dsr": 0.97,
            "pbo": 0.18,
            "final_equity_usd": float(portfolio.iloc[-1]),
            "information_ratio": float("nan"),
        },
        daily_equity=portfolio,
        pair_equity=pair_equity,
        trades=trades,
        theta_grid=theta_grid,
        theta_chosen=(0.7, 0.2),
        theta_previous=(0.65, 0.25),
        calibration=calibration,
        feature_importance=importance,
        stress=pd.DataFrame(
            {
                "scenario": ["base", "costs x2", "slippage x3", "2020 crash", "no shorting fee"],
                "annual_return": [0.142, 0.091, 0.055, -0.04, 0.15],
                "sharpe": [1.61, 1.05, 0.62, float("nan"), 1.7],
                "max_drawdown": [0.113, 0.14, 0.17, 0.31, 0.11],
                "trades_per_year": [190.0, 181.0, 172.0, 240.0, 190.0],
            }
        ),
        lineage={
            "model_version": "lgbm-2024.06.01-3",
            "feature_schema_hash": "9f2c41d0a7be",
            "code_hash": "a61f2349c0d1e2f3",
            "data_hash": "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "seed": "1234",
            "config_hash": "c0ffee12",
        },
        versus_zscore={"annual_return": (0.142, 0.05), "sharpe": (1.61, None),
                       "trades": (380.0, 911.0)},
    )  # fmt: skip


def empty_inputs() -> ReportInputs:
    no_days = pd.Series(dtype=np.float64, index=pd.DatetimeIndex([], tz="UTC"))
    return ReportInputs(
        title="empty run",
        decision="reject",
        gates=[],
        summary={},
        daily_equity=no_days,
        pair_equity={},
        trades=pd.DataFrame(columns=["pair_id", "pnl_usd", "exit_reason", "bars_held"]),
        theta_grid=pd.DataFrame(columns=["theta1", "theta2", "objective"]),
        theta_chosen=(0.5, 0.5),
        theta_previous=None,
        calibration={},
        feature_importance={},
        stress=pd.DataFrame(),
        lineage={},
    )


@pytest.fixture(scope="module")
def report() -> str:
    return render_report(example_inputs())


def test_self_contained_with_one_plotlyjs(report: str) -> None:
    assert '<script src="http' not in report and "<script src=" not in report
    assert report.count(get_plotlyjs()) == 1
    # equity, drawdown, trades, θ, calibration, 2 models' importances
    assert report.count('class="plotly-graph-div"') == 7


def test_sections_in_order_decision_and_gates(report: str) -> None:
    positions = [report.index(f"<h2>{h}</h2>") for h in HEADINGS]
    assert positions == sorted(positions)
    assert '<p class="decision adopt">ADOPT</p>' in report
    for gate in ("dsr", "pbo (probability)", "max_drawdown", "sharpe_vs_current"):
        assert f"<td>{gate}</td>" in report
    assert report.count('<td class="pass">PASS</td>') == 4
    assert "4 of 4 gates passed" in report
    assert NO_DATA not in report


def test_nan_shows_dash(report: str) -> None:
    assert '<td>information_ratio</td><td class="num">—</td>' in report
    assert '<td>sharpe_vs_current</td><td class="num">—</td>' in report
    assert '<td>max_drawdown</td><td class="num">11.00 %</td><td>&lt;= 20.00 %</td>' in report
    assert "nan" not in report.split("<body>")[1].split('<div id="fig-')[0].lower()


def test_same_inputs_same_bytes() -> None:
    assert render_report(example_inputs()) == render_report(example_inputs())


def test_empty_inputs_say_no_data() -> None:
    text = render_report(empty_inputs())
    for h in HEADINGS:
        assert f"<h2>{h}</h2>" in text
    assert text.count(f'<p class="nodata">{NO_DATA}</p>') == len(HEADINGS)
    assert "plotly-graph-div" not in text and get_plotlyjs()[:200] not in text
    assert '<p class="decision reject">REJECT</p>' in text


def test_partly_empty_inputs() -> None:
    inputs = example_inputs()
    inputs.trades = inputs.trades.iloc[:0]
    inputs.theta_grid = inputs.theta_grid.iloc[:0]
    inputs.calibration = {"lightgbm": {"mean_predicted": [], "fraction_positive": []}}
    inputs.daily_equity = inputs.daily_equity.iloc[:0]  # no account: no monthly, no drawdown
    text = render_report(inputs)
    # monthly, drawdown, distribution, trades, θ, calibration
    assert text.count(f'<p class="nodata">{NO_DATA}</p>') == 6
    assert text.count(get_plotlyjs()) == 1
    assert 'id="fig-equity"' in text


def test_scattered_theta_trials_and_no_previous() -> None:
    inputs = example_inputs()
    rng = np.random.default_rng(1)
    inputs.theta_grid = pd.DataFrame(
        {"theta1": rng.uniform(0.5, 0.9, 40), "theta2": rng.uniform(0, 0.5, 40),
         "objective": rng.normal(1, 0.2, 40)}
    )  # fmt: skip
    inputs.theta_previous = None
    theta = render_report(inputs).split('<section id="theta">')[1].split("</section>")[0]
    assert 'id="fig-theta"' in theta and "hoverongaps" not in theta  # points, not a heat-map
    assert '"chosen"' in theta and '"previous"' not in theta


def test_text_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    inputs = example_inputs()
    inputs.title = evil
    inputs.pair_equity[evil] = inputs.pair_equity["KO-PEP"]
    inputs.gates[0]["reason"] = evil
    inputs.gates[1]["gate"] = evil
    inputs.lineage[evil] = evil
    inputs.feature_importance[evil] = {evil: 1.0}
    inputs.stress.loc[0, "scenario"] = evil
    text = render_report(inputs)
    assert evil not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = empty_inputs()
    target = tmp_path / "out" / "report.html"
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    assert write_report(target, inputs) == target
    assert target.read_text(encoding="utf-8") == render_report(inputs)
    (src, dst), *_ = renames
    assert dst == target and src.parent == target.parent and src != target
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]

    def broken(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    inputs.title = "second"
    with pytest.raises(FatalError):
        write_report(target, inputs)
    assert "empty run" in target.read_text(encoding="utf-8")  # previous report kept
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]  # no temp left


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (float("nan"), "—"), (np.float64("nan"), "—"), (True, "yes"), (3, "3"),
     (0.14213, "0.1421"), (123456.7, "123,457"), (float("inf"), "∞"), ("x", "x")],
)  # fmt: skip
def test_fmt(value: Any, text: str) -> None:
    assert fmt(value) == text
