"""A real Prometheus (Debian's package) scrapes the two endpoints, every 1 s, with the rules of
deploy/prometheus/rules.yml: the serving supervisor's (two real worker processes on the demo's
model, one replaying bars, one live on them, whose pipeline watermark is old) and ``mlcore
metrics serve`` over the folder the demo's ingest, backtest, θ search and retrain flow wrote.
A PromQL query over HTTP returns samples of every metric the spec names; `promtool check
metrics` finds both scraped expositions clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mlcore.config import AppConfig, load_config
from mlcore.demo import DemoResult
from mlcore.registry import Alerts, database_url, make_engine
from mlcore.serving import Supervisor, WorkerSpec, bar_message, replay_bars
from tests.conftest import config_with, free_port
from tests.prometheus_tools import RULES, check_metrics, tool

REPLAY_BARS = 300
THETA = (0.55, 0.5)
# The spec's names (002 Analytics・可観測性, 再学習メトリクス) as PromQL selectors, and ours.
SPEC = (
    "inference_latency_ms", "signals_per_min", "data_pipeline_lag_seconds", "bt_run_duration",
    "dq_fail_total", "data_watermark_lag_seconds", "data_bars_written_total",
    "core_retrain_duration_seconds_count", "core_backtest_duration_seconds_count",
    "core_theta_trials_total", "core_theta_best_score",
)  # fmt: skip
OURS = (
    "core_inference_latency_seconds_bucket", 'core_inference_held_total{reason="data_lag"}',
    "model_action_mean", "worker_up", "core_retrain_runs_total", "signals_total",
)  # fmt: skip


def _get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 (loopback)


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    q = urllib.parse.quote(expr)
    doc = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/query?query={q}"))
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def _wait(what: str, ok: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {seconds:g} s")


def _prometheus(tmp: Path, targets: dict[str, int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    jobs = [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
            for job, p in targets.items()]  # fmt: skip
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES)], "scrape_configs": jobs}  # fmt: skip
    (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    proc = subprocess.Popen(
        [tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"),
    )  # fmt: skip
    return proc, port


def _ready(port: int) -> bool:
    try:
        return "Ready" in _get(f"http://127.0.0.1:{port}/-/ready")
    except OSError:
        return False


def test_a_real_prometheus_scrapes_every_named_metric(
    demo_run: tuple[AppConfig, DemoResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool("prometheus")
    demo_cfg, result = demo_run
    assert result.training is not None
    started = time.monotonic()
    # The live worker checks the pipeline's watermark (the demo's data ends in 2024: late).
    fresh = {"watermark": "ingest", "check_every_seconds": 0.5,
             "budget_from": "pipeline_policy.freshness_budget_seconds"}  # fmt: skip
    monkeypatch.setenv("ARCHIVE_PATH", str(demo_cfg.paths.archive))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored after the test
    cfg = load_config(config_with(tmp_path, {"observability_policy": {"data_freshness": fresh}}),
                      "dev")  # fmt: skip
    pairs = (cfg.universe.pairs[0].pair_id,)  # one pair each: workers warm up fast
    bars, warm = replay_bars(cfg, list(pairs), REPLAY_BARS)
    path = tmp_path / "bars.jsonl"
    path.write_bytes(b"")
    replaying = WorkerSpec("worker-0", pairs, str(cfg.config_root), cfg.env_name,
                           str(result.training.folder), THETA, replay=True, warm_until_ns=warm,
                           exit_when_idle_seconds=60.0, root=str(tmp_path / "serving"),
                           bars_file=str(path), aggregate=False)  # fmt: skip
    live = replace(replaying, worker_id="worker-1", replay=False)
    sup = Supervisor(cfg, [replaying, live])
    serving_port, batch_port = free_port(), free_port()
    sup.serve_metrics(serving_port)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    batch = subprocess.Popen(
        [sys.executable, "-m", "mlcore", "metrics", "serve", "--config-root",
         str(cfg.config_root), "--port", str(batch_port),
         "--multiproc-dir", str(demo_cfg.paths.archive / "metrics")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    prom, prom_port = _prometheus(tmp_path, {"serving": serving_port, "batch": batch_port})
    sup.start()

    def feed() -> None:  # over a few seconds: the latency's rate() has points to work on
        with path.open("ab") as fh:
            for i, b in enumerate(bars):
                fh.write((json.dumps(bar_message(b)) + "\n").encode())
                fh.flush()
                if i % 40 == 0:
                    time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        _wait("prometheus ready", lambda: _ready(prom_port), 20)
        missing: list[str] = []

        def every_metric_has_a_sample() -> bool:
            missing[:] = [e for e in (*SPEC, *OURS) if not _query(prom_port, e)]
            return not missing

        try:
            _wait("a sample of every metric", every_metric_has_a_sample, 40)
        except AssertionError:
            raise AssertionError(f"no sample of {missing}") from None
        assert (
            float(_query(prom_port, "sum(core_inference_latency_seconds_count)")[0]["value"][1]) > 0
        )
        held = _query(prom_port, 'core_inference_held_total{reason="data_lag"}')
        assert float(held[0]["value"][1]) > 0  # the live worker held its pair-bars
        # One alert for the live worker's episode (the replaying one never checks).
        lag_alerts = Alerts(make_engine(database_url(cfg))).recent(code="CORE_DATA_PIPELINE_LAG")
        assert [a.message.split(":")[0] for a in lag_alerts] == ["worker-1"]
        up = {r["metric"]["worker"]: r["value"][1] for r in _query(prom_port, "worker_up")}
        assert up == {"worker-0": "1", "worker-1": "1"}
        targets = json.loads(_get(f"http://127.0.0.1:{prom_port}/api/v1/targets"))
        assert {t["health"] for t in targets["data"]["activeTargets"]} == {"up"}
        for port in (serving_port, batch_port):
            out = check_metrics(_get(f"http://127.0.0.1:{port}/metrics"))
            assert (out.returncode, out.stdout, out.stderr) == (0, "", ""), port
        assert time.monotonic() - started < 60
    finally:
        feeder.join()
        sup.stop()
        prom.send_signal(signal.SIGTERM)
        batch.send_signal(signal.SIGTERM)
        prom.wait(timeout=20)
        batch.wait(timeout=20)
