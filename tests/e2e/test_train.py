"""Training on the demo universe (AI1, AI2, AI3, the direction ensemble): a model version with
native files and checksums, the same bytes for the same data and seed, models that reload
without pickle and score the same, and the ensemble's level fallback on real bars."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml

from mlcore.config import AppConfig, load_config
from mlcore.data import Catalog
from mlcore.demo import DemoResult
from mlcore.execution import IsotonicCalibrator, ModelInputs
from mlcore.models import HOLD_LEVEL, DirectionModel
from mlcore.registry import registry_for
from mlcore.training import TrainReport, direction_rows, train_models
from tests.conftest import E2E_TRAINING, config_with
from tests.e2e.conftest import linked_archive


@pytest.fixture(scope="module")
def demo_cfg(demo_run: tuple[AppConfig, DemoResult]) -> tuple[AppConfig, TrainReport]:
    cfg, result = demo_run
    assert result.training is not None
    return cfg, result.training


def test_demo_trains_every_model_with_full_metrics_and_a_passing_canary(
    demo_cfg: tuple[AppConfig, TrainReport],
) -> None:
    _, report = demo_cfg
    # Not blocked; on this small test market AI1 and the calibrations warn (weak), as named.
    assert report.status in ("ok", "weak"), report.blocked_reasons
    assert (report.status == "weak") is bool(report.warnings)
    for model, m in report.metrics.items():
        for part in ("cv_out_of_fold", "oos_raw", "oos_calibrated"):
            for key in ("auc", "pr_auc", "logloss", "brier", "ece", "f1"):
                assert m[part][key] is not None, (model, part, key)
        assert m["canary"]["passed"], model
        assert set(report.events[model]) == {"XAU_XAG", "EUR_GBP", "BTC_ETH"}
    # Risk persists: AI2 predicts the next 24 bars' risk flags well.
    assert report.metrics["ai2"]["oos_calibrated"]["auc"] > 0.8
    direction = report.direction
    assert set(direction["levels"]) == {"2", "3"}
    assert "no external feature source" in direction["skipped_levels"]["1"]
    assert set(direction["rows_per_symbol"]) == {
        "XAU/USD", "XAG/USD", "EUR/USD", "GBP/USD", "BTC/USD", "ETH/USD",
    }  # fmt: skip
    for m in direction["levels"].values():
        for part in ("cv_out_of_fold", "oos"):
            for key in ("auc", "pr_auc", "logloss", "brier", "ece", "f1"):
                assert m[part][key] is not None, (part, key)
        assert m["canary"]["passed"]
        # Volatility tells a 0.5% move from none: better than the class shares alone.
        assert m["oos"]["logloss"] < m["oos"]["prior_logloss"]
    oos = report.ai3["oos"]
    assert all(oos[k] is not None for k in ("rmse", "mae", "r2", "spearman"))
    assert 0 <= oos["mae"] <= oos["rmse"] <= 1


def test_model_version_files_and_checksums(demo_cfg: tuple[AppConfig, TrainReport]) -> None:
    cfg, report = demo_cfg
    # __complete is the atomic folder writer's completion mark.
    names = sorted(p.name for p in report.folder.iterdir() if p.name != "__complete")
    assert names == sorted(
        [
            "ai1.lgbm.txt", "ai1_calibration.json", "ai2.lgbm.txt", "ai2_calibration.json",
            "ai3.lgbm.txt",
            *(f"ensemble_level{k}.{s}" for k in (2, 3)
              for s in ("json", "lightgbm.txt", "xgboost.json", "random_forest.json")),
            "checksums.json", "decision.json",
            "dataset_index_filtered.json", "feature_schema.json", "metrics.json", "params.yaml",
            "preprocess_report.json", "run.json",
        ]
    )  # fmt: skip
    sums = json.loads((report.folder / "checksums.json").read_text())
    assert set(sums) == set(names) - {"checksums.json"}
    for name, digest in sums.items():
        assert hashlib.sha256((report.folder / name).read_bytes()).hexdigest() == digest
    run = json.loads((report.folder / "run.json").read_text())
    assert run["model_version"] == report.model_version
    assert report.model_version.startswith(datetime.now(UTC).strftime("%Y%m%d"))
    assert len(run["data_hash"]) == 64 and run["seed"] == 7
    params = yaml.safe_load((report.folder / "params.yaml").read_text())
    assert params["labels"]["ai1"]["horizon_bars"] == 48 and 0.6 <= params["theta1"] <= 0.85
    prep = json.loads((report.folder / "preprocess_report.json").read_text())
    assert prep["ai1"]["passthrough_columns"] == ["event_direction", "event_abs_z0"]
    assert sum(prep["ai1"]["clipped_values"].values()) > 0
    metrics = json.loads((report.folder / "metrics.json").read_text())
    assert metrics["retrain_status"] == report.status and set(metrics) >= {"ai1", "ai2"}
    decision = json.loads((report.folder / "decision.json").read_text())
    assert decision["labels"] == params["labels"] and decision["timeframe"] == "1h"
    assert decision["execution"] == cfg.backtest.execution_at("1h").model_dump(mode="json")
    assert set(decision["trading"]) == {s for p in decision["pairs"]
                                        for s in (p["leg_a"], p["leg_b"])}  # fmt: skip
    assert (report.folder / "decision.json").read_text() == json.dumps(
        decision, sort_keys=True, indent=2
    ) + "\n"  # canonical: sorted keys


def test_another_seed_gives_other_models_in_a_new_folder(
    demo_cfg: tuple[AppConfig, TrainReport],
) -> None:
    """(That the same data and seed give the same bytes, every file, is the rebuild test in
    test_backtest.py, which retrains the demo's version from its lineage.)"""
    cfg, first = demo_cfg
    minute = datetime.strptime(first.folder.name[:13], "%Y%m%d_%H%M").replace(tzinfo=UTC)
    other = train_models(cfg, Catalog(cfg), "1h", seed=8, now=minute, direction=False)
    # Same minute and commit as the first version: a new folder, no overwrite.
    assert other.folder.name == first.folder.name + "_2"
    assert (other.folder / "ai1.lgbm.txt").read_bytes() != (
        first.folder / "ai1.lgbm.txt"
    ).read_bytes()


def test_a_blocked_training_exits_1_naming_why_and_registers_the_version_rejected(
    demo_cfg: tuple[AppConfig, TrainReport],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A script running `mlcore train && mlcore backtest` must not go on after a blocked run
    (it had exited 0). Leaves too big for the data: no tree splits, so every model blocks."""
    from typer.testing import CliRunner

    from mlcore.cli import app

    cfg, _ = demo_cfg
    monkeypatch.setenv("ARCHIVE_PATH", str(linked_archive(cfg, tmp_path)))
    policy = {**E2E_TRAINING, "lightgbm": {"min_child_samples": 10_000_000},
              "optuna": {"ai1_trials": 0, "ai2_trials": 0, "ai3_trials": 0,
                         "direction_trials": 0}}  # fmt: skip
    root = config_with(tmp_path, {"training_policy": policy})
    args = ["train", "--timeframe", "1h", "--no-direction",
            "--config-root", str(root)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    said = result.output + capfd.readouterr().err
    assert result.exit_code == 1, said
    errors = [ln for ln in said.splitlines() if ln.startswith("error ")]
    assert len(errors) == 1 and errors[0].startswith("error TRAIN_RUN_BLOCKED: training of "), said
    assert "blocked (ai1, ai2, ai3: the reasons are under retrain_status" in errors[0], said
    assert errors[0].endswith("registered as rejected") and "no split in any tree" in said
    assert "Traceback" not in said
    reg = registry_for(load_config(root, "dev"))
    (rec,) = reg.records()
    assert rec.status == "rejected" and rec.model_version in errors[0]
    reg.engine.dispose()


def test_the_stored_model_reloads_natively_and_scores_the_same(
    demo_cfg: tuple[AppConfig, TrainReport],
) -> None:
    cfg, report = demo_cfg
    folder = report.folder
    booster = lgb.Booster(model_str=(folder / "ai1.lgbm.txt").read_text())
    schema = json.loads((folder / "feature_schema.json").read_text())
    inputs = ModelInputs.from_schema(schema["models"]["ai1"])
    calib = IsotonicCalibrator.from_dict(json.loads((folder / "ai1_calibration.json").read_text()))
    assert list(inputs.columns) == list(cfg.feature_order.pair_models.ai1)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, len(inputs.columns))), columns=list(inputs.columns))
    X, _ = inputs.transform(frame)
    p = calib.predict(booster.predict(X, raw_score=True))
    assert ((p >= 0) & (p <= 1)).all()
    # (That the stored booster scores exactly as the fitted model is tested in
    # tests/unit/test_train_binary.py, where the fitted model is at hand.)
    assert (
        booster.num_trees()
        == json.loads((folder / "metrics.json").read_text())["ai1"]["best_iteration"]
    )


def test_the_direction_ensemble_serves_real_bars_from_level_2(
    demo_cfg: tuple[AppConfig, TrainReport],
) -> None:
    cfg, report = demo_cfg
    model = DirectionModel.load(report.folder)
    assert set(model.levels) == {2, 3}
    assert "ensemble_level1.json" in model.unavailable[1]
    rows = direction_rows(cfg, Catalog(cfg), "BTC/USD", "1h").tail(500)
    pred = model.predict(rows)
    assert (pred.level == 2).all()  # warm bars: every level-2 feature is there
    assert model.fallbacks == {f"level1: {model.unavailable[1]}": 500}
    # The first bars of the history lack the 60-bar features: HOLD, counted.
    cold = model.predict(direction_rows(cfg, Catalog(cfg), "BTC/USD", "1h").head(5))
    assert (cold.level == HOLD_LEVEL).all() and (cold.label == 1).all()
