"""The backtest of the demo's model version: stored results stamped with their lineage, money
that adds up, stress scenarios, gate decisions with reasons, the same bytes on a re-run, the
HTML report, and clear refusals of a tampered or missing model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.backtest import SCENARIOS, BacktestReport, PairModels, rebuild_report, run_backtest
from mlcore.config import AppConfig
from mlcore.data import Catalog
from mlcore.demo import DemoResult

TABLES = ("bt_summary", "bt_trades", "bt_daily_equity", "bt_stress_results", "theta_search")


@pytest.fixture(scope="module")
def bt(demo_run: tuple[AppConfig, DemoResult]) -> tuple[AppConfig, DemoResult, BacktestReport]:
    cfg, result = demo_run
    assert result.backtest is not None
    return cfg, result, result.backtest


def test_results_are_stamped_with_their_lineage(
    bt: tuple[AppConfig, DemoResult, BacktestReport],
) -> None:
    _, result, rep = bt
    assert result.training is not None
    model = result.training.folder
    schema_hash = hashlib.sha256((model / "feature_schema.json").read_bytes()).hexdigest()
    assert rep.lineage["feature_schema_hash"] == schema_hash
    for name in TABLES:
        frame = pd.read_parquet(rep.folder / f"{name}.parquet")
        assert len(frame) > 0, name
        assert (frame["model_version"] == model.name).all()
        assert (frame["feature_schema_hash"] == schema_hash).all()
        assert (frame["code_hash"] == rep.lineage["code_hash"]).all()
        assert (frame["seed"] == rep.lineage["seed"]).all()
    record = json.loads((rep.folder / "backtest.json").read_bytes())
    assert record["decision"] in ("adopt", "reject")
    assert record["decision"] == rep.decision
    gates = {g["gate"]: g for g in record["gates"]}
    assert set(gates) == {"sharpe", "max_drawdown", "trades_per_year", "non_inferiority",
                          "deflated_sharpe", "pbo"}  # fmt: skip
    assert all(g["reason"] for g in gates.values())
    assert (rep.decision == "adopt") == all(g["passed"] for g in gates.values())


def test_money_adds_up_on_the_test_window(
    bt: tuple[AppConfig, DemoResult, BacktestReport],
) -> None:
    _, _, rep = bt
    trades = pd.read_parquet(rep.folder / "bt_trades.parquet")
    daily = pd.read_parquet(rep.folder / "bt_daily_equity.parquet")
    assert len(trades) > 10
    assert set(trades["exit_reason"]) <= {"exit_z", "time_stop", "dd_flatten", "end_of_data"}
    assert (trades["cost_usd"] > 0).all() and (trades["carry_usd"] >= 0).all()
    assert (trades["exit_ts"] > trades["entry_ts"]).all()
    # Every position is closed by the end: the account's last equity is the capital plus the
    # trades' P&L (after costs and carry).
    capital = rep.test["capital_usd"]
    assert daily["equity_usd"].iloc[-1] == pytest.approx(
        capital + trades["pnl_usd"].sum(), rel=1e-9
    )
    pair_cols = [c for c in daily.columns if c.startswith("equity_") and c != "equity_usd"]
    assert len(pair_cols) == 3
    np.testing.assert_allclose(daily[pair_cols].sum(axis=1), daily["equity_usd"], rtol=1e-12)
    # Legs are β-neutral in notional at entry: B's notional is |β| x A's (up to lot rounding).
    notional_a = trades["units_a"].abs() * trades["entry_price_a"]
    notional_b = trades["units_b"].abs() * trades["entry_price_b"]
    assert (notional_a > 0).all() and (notional_b > 0).all()
    assert np.sign(trades["units_a"]).ne(0).all()


def test_stress_scenarios_and_theta(bt: tuple[AppConfig, DemoResult, BacktestReport]) -> None:
    cfg, _, rep = bt
    stress = rep.stress.set_index("scenario")
    assert tuple(stress.index) == SCENARIOS
    assert stress.loc["base", "sharpe"] == pytest.approx(rep.test["sharpe"])
    # Same signals, twice the costs: strictly worse.
    assert stress.loc["cost_increase", "annual_return"] < stress.loc["base", "annual_return"]
    th = rep.theta_run
    box = cfg.core.theta_search_range
    t1, t2 = th.stabilised.theta
    assert box.theta1[0] <= t1 <= box.theta1[1] and box.theta2[0] <= t2 <= box.theta2[1]
    prev = th.stabilised.previous
    if not th.stabilised.kept_previous:
        assert abs(t1 - prev[0]) <= cfg.backtest.stabilisation.max_step + 1e-9
    tried = pd.read_parquet(rep.folder / "theta_search.parquet")
    assert (tried["stage"] == "grid").sum() == 36
    assert 0 <= (tried["stage"] == "optuna").sum() <= cfg.backtest.theta_search.trials
    assert th.search.best_objective == pytest.approx(tried["objective"].max())


def test_same_inputs_give_the_same_bytes(bt: tuple[AppConfig, DemoResult, BacktestReport]) -> None:
    cfg, result, rep = bt
    assert result.training is not None
    before = {p.name: p.read_bytes() for p in rep.folder.iterdir()}
    again = run_backtest(cfg, Catalog(cfg), result.training.folder)
    after = {p.name: p.read_bytes() for p in again.folder.iterdir()}
    assert sorted(before) == sorted(after)
    for name, body in before.items():
        assert body == after[name], name


def test_report_is_self_contained_and_rebuilds(
    bt: tuple[AppConfig, DemoResult, BacktestReport],
) -> None:
    cfg, _, rep = bt
    written = rep.report.read_bytes()
    html = written.decode()
    assert "<script src=" not in html
    assert rep.decision.upper() in html
    for gate in rep.gates:
        assert gate["gate"] in html
    for pair in ("feature_schema_hash", "code_hash"):  # lineage only in the lineage table
        assert html.count(f"<td>{pair}</td>") == 1
    rep.report.unlink()
    path = rebuild_report(cfg, rep.folder)
    assert path == rep.report
    assert path.read_bytes() == written  # `mlcore report` gives the page the backtest wrote


def test_a_tampered_or_missing_model_is_refused(
    bt: tuple[AppConfig, DemoResult, BacktestReport], tmp_path: Path
) -> None:
    _, result, _ = bt
    assert result.training is not None
    copy = tmp_path / result.training.folder.name
    shutil.copytree(result.training.folder, copy)
    model = copy / "ai1.lgbm.txt"
    model.write_bytes(model.read_bytes().replace(b"tree", b"TREE", 1))
    with pytest.raises(ValueError, match=r"ai1\.lgbm\.txt: checksum mismatch"):
        PairModels.load(copy)
    (copy / "ai2_calibration.json").unlink()
    model.unlink()
    with pytest.raises(ValueError, match=r"no ai1\.lgbm\.txt or ai1\.xgb\.json"):
        PairModels.load(copy)
    with pytest.raises(ValueError, match="no such model version folder"):
        PairModels.load(tmp_path / "nope")
    # A malformed file whose checksum was updated with it: named, with what is wrong.
    good = tmp_path / "good"
    shutil.copytree(result.training.folder, good)
    params = good / "params.yaml"
    params.write_text(params.read_text().replace("timeframe: 1h", "timeframe: 7h"))
    sums = json.loads((good / "checksums.json").read_text())
    sums["params.yaml"] = hashlib.sha256(params.read_bytes()).hexdigest()
    (good / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(ValueError, match=r"params\.yaml: timeframe '7h' is not one of"):
        PairModels.load(good)


def test_a_lost_model_file_is_restored_from_the_registry(
    bt: tuple[AppConfig, DemoResult, BacktestReport], tmp_path: Path
) -> None:
    from mlcore.registry import open_registry

    _, result, _ = bt
    assert result.training is not None
    served = tmp_path / "models" / result.training.folder.name
    shutil.copytree(result.training.folder, served)
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "store")
    reg.register(served, actor="test", notes="demo version")
    (served / "ai1.lgbm.txt").unlink()
    with pytest.raises(ValueError, match=r"ai1\.lgbm\.txt"):
        PairModels.load(served)
    models = PairModels.load(served, restore=lambda v: reg.restore(v, actor="loader"))
    assert models.version == served.name
    assert reg.verify(served.name) == {}
    assert reg.history(served.name)[-1]["event"] == "MODEL_RESTORED"


def test_a_version_rebuilds_byte_identical_from_its_lineage(
    bt: tuple[AppConfig, DemoResult, BacktestReport], tmp_path: Path
) -> None:
    from mlcore.registry import rebuild

    cfg, result, _ = bt
    assert result.training is not None
    # A copy whose AI1 file was swapped (with its checksum, so only a rebuild can tell).
    copy = tmp_path / result.training.folder.name
    shutil.copytree(result.training.folder, copy)
    model = copy / "ai1.lgbm.txt"
    model.write_bytes(model.read_bytes() + b"\n")
    sums = json.loads((copy / "checksums.json").read_text())
    sums["ai1.lgbm.txt"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (copy / "checksums.json").write_text(json.dumps(sums))
    rep = rebuild(cfg, Catalog(cfg), copy)
    assert rep.warnings == []
    assert rep.differing == ["ai1.lgbm.txt"] and rep.missing == []
    assert not rep.ok
    # Everything else, the direction ensemble included, came out byte for byte.
    assert {"ai2.lgbm.txt", "ai3.lgbm.txt", "metrics.json", "feature_schema.json",
            "ensemble_level3.json"} <= set(rep.identical)  # fmt: skip
    assert len(rep.identical) == len(sums) - 2  # all but run.json and ai1
