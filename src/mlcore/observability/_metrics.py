"""The Prometheus metrics of the batch side and the feedback loop (spec 002 Analytics・可観測性,
再学習メトリクス, 観測設定). Built on first use, not at import: a short-lived command first
points prometheus_client at the multiprocess folder (:func:`bind_multiproc`), so what it records
outlives it and ``mlcore metrics serve`` serves the sum. The serving workers' own metrics are in
``mlcore.serving._metrics`` (the supervisor serves them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.values import MultiProcessValue

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Latency buckets in seconds, with one at the spec's 0.2 s SLO (inference_latency_ms < 200).
LATENCY_BUCKETS_SECONDS = (
    1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
)  # fmt: skip
#: Run durations in seconds: a quick backtest to a long retrain.
DURATION_BUCKETS_SECONDS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


class DqRule(StrEnum):
    """The data-quality checks an ingest counts failures of (``dq_fail_total{rule}``)."""

    ROW_REJECTED = "row_rejected"
    CONFLICT = "conflict"
    OUTLIER = "outlier"
    SPIKE = "spike"
    FILLED = "filled"
    MISSING = "missing"
    QUARANTINED = "quarantined"


class Outcome(StrEnum):
    """How a run ended."""

    SUCCESS = "success"
    ABORTED = "aborted"  # a retrain whose training was blocked: nothing to adopt
    FAILURE = "failure"


class Detector(StrEnum):
    """The feedback detectors whose state is a gauge (``core_drift_alarm{detector}``)."""

    FEATURE_DRIFT = "feature_drift"
    MEAN_SHIFT = "mean_shift"
    WIN_RATE_GAP = "win_rate_gap"
    RISK_GATE_PASS_RATE = "risk_gate_pass_rate"  # noqa: S105 (a name, not a secret)
    RISK_FLAG_RUNS = "risk_flag_runs"
    DECAY = "decay"


class HoldReason(StrEnum):
    """Why a worker held inference back (``core_inference_held_total{reason}``)."""

    DATA_LAG = "data_lag"


@dataclass(frozen=True)
class Metrics:
    """Every collector of this module (one set per process)."""

    data_bars_written: Counter
    dq_fail: Counter
    data_watermark_lag_seconds: Gauge
    data_pipeline_lag_seconds: Gauge
    bt_run_duration: Gauge
    backtest_duration_seconds: Histogram
    retrain_duration_seconds: Histogram
    retrain_runs: Counter
    theta_trials: Counter
    theta_best_score: Gauge
    inference_held: Counter
    live_sharpe: Gauge
    live_win_rate: Gauge
    live_max_drawdown_ratio: Gauge
    live_pnl_usd: Gauge
    live_trades: Gauge
    drift_psi: Gauge
    drift_alarm: Gauge
    detector_value: Gauge


def bind_multiproc(folder: Path) -> None:
    """Record into prometheus_client multiprocess files under ``folder`` from now on (in this
    process and its children), unless a folder is already set (a serving worker keeps its
    supervisor's). Call before the first metric is recorded."""
    if os.environ.get(MULTIPROC_ENV):
        folder = Path(os.environ[MULTIPROC_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    if metrics.cache_info().currsize == 0:
        values.ValueClass = MultiProcessValue()  # type: ignore[no-untyped-call]


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    # The newest value wins across processes: a batch command's gauge outlives its process.
    return Gauge(name, doc, labels, multiprocess_mode="mostrecent")


@cache
def metrics() -> Metrics:
    """The collectors (registered in the default registry on first call)."""
    return Metrics(
        data_bars_written=Counter(
            "data_bars_written", "Bars an ingest wrote (new or updated raw rows)",
            ["symbol", "timeframe"],
        ),
        dq_fail=Counter(
            "dq_fail", "Data-quality failures found by an ingest, by rule (rows or bars)",
            ["rule"],
        ),
        data_watermark_lag_seconds=_gauge(
            "data_watermark_lag_seconds",
            "Now minus the close of the newest ingested bar (the pipeline's watermark)",
            ("symbol", "timeframe"),
        ),
        data_pipeline_lag_seconds=_gauge(
            "data_pipeline_lag_seconds",
            "Age of the newest live bar when it reached a serving worker (now minus its close)",
            ("symbol",),
        ),
        bt_run_duration=_gauge(
            "bt_run_duration", "Wall time of the last backtest run, seconds (spec name)"
        ),
        backtest_duration_seconds=Histogram(
            "core_backtest_duration_seconds", "Wall time of backtest runs",
            buckets=DURATION_BUCKETS_SECONDS,
        ),
        retrain_duration_seconds=Histogram(
            "core_retrain_duration_seconds", "Wall time of retrain flows, by outcome",
            ["outcome"], buckets=DURATION_BUCKETS_SECONDS,
        ),
        retrain_runs=Counter("core_retrain_runs", "Retrain flows that ended, by outcome",
                             ["outcome"]),
        theta_trials=Counter("core_theta_trials", "θ search trials evaluated"),
        theta_best_score=_gauge("core_theta_best_score", "Objective of the last search's best θ"),
        inference_held=Counter(
            "core_inference_held", "Pair-bars whose new entries were held back, by reason",
            ["reason"],
        ),
        live_sharpe=_gauge("core_live_sharpe", "Live Sharpe ratio (annualized)", ("pair",)),
        live_win_rate=_gauge("core_live_win_rate", "Live share of winning trades", ("pair",)),
        live_max_drawdown_ratio=_gauge(
            "core_live_max_drawdown_ratio", "Live maximum drawdown, share of peak equity", ("pair",)
        ),
        live_pnl_usd=_gauge("core_live_pnl_usd", "Live realized P&L", ("pair",)),
        live_trades=_gauge("core_live_trades", "Live closed trades in the KPI window", ("pair",)),
        drift_psi=_gauge("core_drift_psi", "Population stability index of a feature", ("feature",)),
        drift_alarm=_gauge("core_drift_alarm", "1 while a detector's alarm stands", ("detector",)),
        detector_value=_gauge(
            "core_detector_value", "A detector's statistic at its last check", ("detector",)
        ),
    )  # fmt: skip
