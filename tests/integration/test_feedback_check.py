"""`mlcore feedback check` end to end on both databases: a deployed version whose live window
(newest bars of the feature cache) has a planted drift fires the drift detector, records every
detector in audit.analytics_actions, alerts, and starts core_retrain_flow with the reason (the
run is real: the archive has no bars, so it fails at once at its catalog step, recorded in
audit.retrain_runs with the reason); a second check within the minimum interval is suppressed
and starts nothing; past the interval it starts again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig, load_config
from mlcore.execution import decision_record, record_bytes
from mlcore.features import pair_feature_hash
from mlcore.feedback import RetrainDecision, Verdict, check_feedback
from mlcore.registry import registry_for
from tests.conftest import config_with, make_version, postgres_url

pytestmark = pytest.mark.usefixtures("prefect_harness")

BARS, TRAIN_END, LIVE = 1600, 1200, 200


@pytest.fixture(params=["sqlite", "postgresql"])
def cfg(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AppConfig]:
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    root = config_with(tmp_path, {
        "retrain_policy": {"retrain_retry_delay_minutes": 0.0005, "heartbeat_seconds": 0.2},
        "analytics_policy": {"drift": {
            "false_alarm_rate": 0.01, "live_window_bars": LIVE, "min_live_bars": 100,
            "min_training_bars": 800, "psi_bins": 10, "psi_epsilon": 0.0001,
            "block_length_rule": "politis_white", "max_block_bars": 200, "bootstrap_draws": 3300,
            "calibration_replicates": 5, "calibration_draws": 300, "calibration_windows": 100,
            "calibration_power": 2,
            "min_training_to_live_ratio": 4,
            "seed": 7, "retrain_min_interval_seconds": 3600,
        }},
    })  # fmt: skip
    if request.param == "sqlite":
        yield load_config(root, "dev")
        return
    for url in postgres_url():
        monkeypatch.setenv("POSTGRES_URL", url)
        yield load_config(root, "dev")


def _deploy(cfg: AppConfig, ts: pd.DatetimeIndex) -> str:
    """A deployed version trained on universe.yaml's first pair, its training part ending at
    bar TRAIN_END (metrics.json split_ts), with its decision record."""
    name = "20250301_0000_abc1234"
    folder = make_version(cfg.paths.models, name)
    pair = cfg.universe.pairs[0]
    (folder / "decision.json").write_bytes(record_bytes(decision_record(cfg, "1h", [pair])))
    split = {"calibration_start": ts[TRAIN_END].isoformat(), "test_start": ts[1400].isoformat()}
    metrics = {"ai1": {"oos_raw": {"auc": 0.61}, "split_ts": split}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.iterdir() if p.name != "checksums.json"}  # fmt: skip
    (folder / "checksums.json").write_text(json.dumps(sums))
    reg = registry_for(cfg)
    reg.register(folder, actor="test", notes="trained")
    reg.transition(name, "candidate", actor="test", notes="backtest passed")
    reg.transition(name, "approved", actor="test", notes="gates passed", theta=(0.6, 0.3))
    reg.transition(name, "deployed", actor="test", notes="first deployment")
    return name


def _feature_cache(cfg: AppConfig, pair_id: str, ts: pd.DatetimeIndex, shift_sd: float) -> None:
    """The pair's cached features (the cache's own layout): AR(1) columns, the newest LIVE bars
    of column z shifted by ``shift_sd`` standard deviations."""
    rng = np.random.default_rng(3)
    cols = list(cfg.feature_order.pair_models.ai2)
    x = np.zeros((len(ts), len(cols)))
    e = rng.standard_normal(x.shape)
    for t in range(1, len(ts)):
        x[t] = 0.5 * x[t - 1] + e[t]
    z = cols.index("z")
    x[-LIVE:, z] += shift_sd * x[:TRAIN_END, z].std()
    frame = pd.DataFrame(x, columns=cols)
    frame.insert(0, "ts", ts)
    fhash = pair_feature_hash(cfg)
    root = cfg.paths.features / "1h" / pair_id
    months = {}
    for month, part in frame.groupby(frame["ts"].dt.strftime("%Y-%m")):
        folder = root / str(month)
        folder.mkdir(parents=True)
        part.reset_index(drop=True).to_parquet(folder / f"{fhash}.parquet")
        key = hashlib.sha256(str(month).encode()).hexdigest()
        (folder / f"{fhash}.meta.json").write_text(json.dumps({"chain_key": key}))
        months[str(month)] = key
    (root / f"{fhash}.index.json").write_text(json.dumps({"feature_hash": fhash,
                                                          "months": months}))  # fmt: skip


def test_a_planted_drift_fires_alerts_and_starts_a_rate_limited_retrain(cfg: AppConfig) -> None:
    ts = pd.date_range("2025-01-01", periods=BARS, freq="h", tz="UTC")
    version = _deploy(cfg, ts)
    pair_id = cfg.universe.pairs[0].pair_id
    _feature_cache(cfg, pair_id, ts, shift_sd=1.5)
    reg = registry_for(cfg)

    result = CliRunner().invoke(app, ["feedback", "check", "--config-root", str(cfg.config_root)])
    assert result.exit_code == 0, result.output
    assert "retrain: started" in result.output and "Traceback" not in result.output
    checks = reg.actions(action="feedback_check")
    by_detector = {a.details["detector"]: a.details for a in checks if a.details}
    drift = by_detector["DRIFT"]
    assert drift["verdict"] == "fired" and "z" in drift["values"]["drifted"]
    assert drift["values"]["live_bars"] == LIVE and drift["values"]["train_bars"] == TRAIN_END
    assert by_detector["WIN_RATE"]["verdict"] == "inconclusive"
    assert by_detector["RISK_GATE"]["verdict"] == "inconclusive"  # no signals served yet
    assert all(a.actor == "system:feedback" for a in checks)
    [alert] = reg.alerts("FEEDBACK_DRIFT_FEATURE")
    assert version in alert["message"] and pair_id in alert["message"]
    [run] = reg.runs()
    assert run.status == "failed"  # a real run: no bars in this archive
    assert run.metrics is not None and "DRIFT " + pair_id in run.metrics["reason"]
    [started] = reg.actions(action="feedback_retrain")
    assert started.result == "ok" and started.reason == run.metrics["reason"]

    # Within the minimum interval: recorded as suppressed, no run started.
    again = check_feedback(cfg)
    assert again.retrain is RetrainDecision.SUPPRESSED and again.retrain_run is None
    assert len(reg.runs()) == 1
    assert [a.result for a in reg.actions(action="feedback_retrain")] == ["ok", "refused"]
    assert len(reg.alerts("FEEDBACK_RETRAIN_SUPPRESSED")) == 1

    # Past it: started again.
    later = check_feedback(cfg, now=datetime.now(UTC) + timedelta(hours=2))
    assert later.retrain is RetrainDecision.STARTED and later.retrain_run is not None
    assert len(reg.runs()) == 2


def test_no_drift_no_alert_and_no_retrain(cfg: AppConfig) -> None:
    ts = pd.date_range("2025-01-01", periods=BARS, freq="h", tz="UTC")
    _deploy(cfg, ts)
    pair_id = cfg.universe.pairs[0].pair_id
    _feature_cache(cfg, pair_id, ts, shift_sd=0.0)
    reg = registry_for(cfg)
    outcome = check_feedback(cfg)
    [drift] = [r for r in outcome.results if r.detector.name == "DRIFT"]
    assert drift.verdict is Verdict.QUIET, drift.reason
    assert outcome.retrain is RetrainDecision.NOT_NEEDED and reg.runs() == []
    assert reg.alerts("FEEDBACK_DRIFT_FEATURE") == []
