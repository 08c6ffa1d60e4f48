"""Every metric the spec names, as the two endpoints expose them (the serving supervisor's and
``mlcore metrics serve``'s, both prometheus_client multiprocess folders written by other
processes): present, `promtool check metrics` clean, a 0.2 s latency bucket, and every label
value inside a bounded set (no ids, no timestamps)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlcore.config import AppConfig
from mlcore.observability import LiveKpis, exposition, label_sets, record_kpis
from mlcore.serving import BAR_REASONS
from tests.conftest import CONFIG_ROOT
from tests.prometheus_tools import check_metrics

# A batch process (ingest, backtest, θ search, retrain flow, feedback) recording everything.
BATCH = """
import os, sys
from pathlib import Path
from mlcore.config import load_config
import mlcore.observability as o
cfg = load_config(Path(sys.argv[1]), "dev")
o.bind(cfg)
pairs = [p.pair_id for p in cfg.universe.pairs]
o.record_ingest(cfg, "EUR/USD", "1h", 120, {o.DqRule.ROW_REJECTED: 2, o.DqRule.FILLED: 1})
o.record_ingest(cfg, "ZZZ/QQQ", "1h", 5, {})
o.record_watermark_lag(cfg, "EUR/USD", "1h", 3650.0)
o.record_backtest(12.5)
o.record_retrain(300.0, o.Outcome.SUCCESS)
o.record_retrain(20.0, o.Outcome.FAILURE)
o.record_theta(40, 1.7)
o.record_kpis(cfg, [o.LiveKpis(p, 1.1, 0.55, 0.04, 120.0, 12) for p in pairs])
features = cfg.feature_order.pair_models.ai2[:3]
o.record_detector(cfg, o.Detector.FEATURE_DRIFT, alarm=True, value=0.3,
                  psi_by_feature={f: 0.1 for f in features})
o.record_detector(cfg, o.Detector.DECAY, alarm=False, value=0.8)
"""
# A serving worker (the supervisor sets PROMETHEUS_MULTIPROC_DIR before starting it).
WORKER = """
import sys
from pathlib import Path
from mlcore.config import load_config
import mlcore.observability as o
from mlcore.serving import _metrics as m
cfg = load_config(Path(sys.argv[1]), "dev")
for s in (0.00005, 0.003, 0.25):
    m.INFERENCE_LATENCY_SECONDS.observe(s)
m.SIGNALS_TOTAL.labels("entry").inc()
m.SIGNALS_TOTAL.labels("hold").inc(3)
m.SIGNALS_PER_MIN.labels("worker-0").set(4)
m.BARS_REFUSED_TOTAL.labels("stale_bar").inc()
m.OUTBOX_PENDING.labels("worker-0").set(0)
m.SIGNALS_EXPIRED_TOTAL.inc(0)
m.MODEL_ACTION_MEAN.set(0.25)
o.record_pipeline_lag(cfg, "EUR/USD", 4.5)
o.record_inference_held(o.HoldReason.DATA_LAG, 2)
"""
BATCH_NAMES = {
    "data_bars_written_total", "dq_fail_total", "data_watermark_lag_seconds", "bt_run_duration",
    "core_backtest_duration_seconds", "core_retrain_duration_seconds", "core_retrain_runs_total",
    "core_theta_trials_total", "core_theta_best_score", "core_live_sharpe", "core_live_win_rate",
    "core_live_max_drawdown_ratio", "core_live_pnl_usd", "core_live_trades", "core_drift_psi",
    "core_drift_alarm", "core_detector_value",
}  # fmt: skip
WORKER_NAMES = {
    "core_inference_latency_seconds", "signals_total", "signals_per_min", "bars_refused_total",
    "outbox_pending", "core_signals_expired_total", "model_action_mean",
    "data_pipeline_lag_seconds", "core_inference_held_total",
}  # fmt: skip
REFUSALS = BAR_REASONS | {"warmup", "stale_bar", "fx_stale", "history_gap"}


def _start(code: str, archive: Path, env_dir: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ARCHIVE_PATH": str(archive), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if env_dir is not None:
        env_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(env_dir)
    return subprocess.Popen([sys.executable, "-c", code, str(CONFIG_ROOT)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("metrics")
    archive = tmp / "archive"
    procs = [_start(BATCH, archive), _start(WORKER, archive, tmp / "serving-metrics")]
    for proc in procs:  # both at once: each is mostly import time
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    serving = exposition(tmp / "serving-metrics")
    return {"batch": exposition(archive / "metrics"), "serving": serving}


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


def _names(text: str) -> set[str]:
    """The exposed names (a counter's family name is shown with its `_total`)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    return names


@pytest.mark.parametrize("endpoint", ["batch", "serving"])
def test_promtool_finds_every_exposition_clean(endpoints: dict[str, str], endpoint: str) -> None:
    out = check_metrics(endpoints[endpoint])
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_every_named_metric_is_exposed_with_samples(endpoints: dict[str, str]) -> None:
    assert BATCH_NAMES <= _names(endpoints["batch"])
    assert WORKER_NAMES <= _names(endpoints["serving"])
    for text in endpoints.values():
        for name, samples in _families(text).items():
            assert samples, f"{name} has no sample"


def test_the_latency_histogram_has_a_bucket_at_the_slo(endpoints: dict[str, str]) -> None:
    samples = _families(endpoints["serving"])["core_inference_latency_seconds"]
    buckets = {s[1]["le"]: s[2] for s in samples if s[0].endswith("_bucket")}
    assert buckets["0.2"] == 2 and buckets["+Inf"] == 3  # 0.25 s is over the SLO


def test_every_label_value_is_in_a_bounded_set(cfg: AppConfig, endpoints: dict[str, str]) -> None:
    bounded = {**label_sets(cfg), "le": None, "action": {"entry", "exit", "hold"},
               "reason": set(label_sets(cfg)["reason"]) | REFUSALS}  # fmt: skip
    seen: dict[str, set[str]] = {}
    for text in endpoints.values():
        for samples in _families(text).values():
            for _, labels, _ in samples:
                for k, v in labels.items():
                    seen.setdefault(k, set()).add(v)
    assert seen.pop("worker") == {"worker-0"}  # one per worker process slot
    assert "pid" not in seen  # a process id would be a new series on every restart
    for label, values in seen.items():
        assert label in bounded, f"label {label} has no bounded set"
        if bounded[label] is not None:
            assert values <= bounded[label], (label, values - bounded[label])
    assert "other" in seen["symbol"]  # an instrument outside the universe is not its own label


def test_an_unbounded_label_value_is_refused(cfg: AppConfig) -> None:
    with pytest.raises(ValueError, match="pair="):
        record_kpis(cfg, [LiveKpis("sig-1234", 1.0, 0.5, 0.1, 0.0, 1)])
