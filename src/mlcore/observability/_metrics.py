"""The Prometheus metrics of the batch side and the feedback loop (spec 002 Analytics・可観測性,
再学習メトリクス, 観測設定). Built on first use, not at import: a short-lived command first
points prometheus_client at the multiprocess folder (:func:`bind_multiproc`), so what it records
outlives it and ``mlcore metrics serve`` serves the sum. The serving workers' own metrics are in
``mlcore.serving._metrics`` (the supervisor serves them)."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import cache, cached_property
from pathlib import Path

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, values
from prometheus_client.values import MultiProcessValue

from mlcore.errors import ConfigError

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


_bound: list[str] = []  # the folder this module last pointed the environment at


def _env_folder_ready() -> None:
    """prometheus_client writes into ``PROMETHEUS_MULTIPROC_DIR`` from the first collector built
    (the workers' are built at import), and a folder that did not exist ended the process in a
    traceback from inside it. A folder set but missing is made (as :func:`bind_multiproc`
    does); an empty value is read as unset (it had meant files in the working directory); a
    folder that cannot be made is a config error naming the variable."""
    env = os.environ.get(MULTIPROC_ENV)
    if env is None:
        return
    if not env.strip():
        del os.environ[MULTIPROC_ENV]
        values.ValueClass = values.MutexValue
        return
    try:
        Path(env).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            "CONFIG_ENV_INVALID",
            f"{MULTIPROC_ENV}={env!r}: the metrics folder cannot be made "
            f"({exc.strerror or exc}); point it at a writable folder or unset it",
        ) from None


_env_folder_ready()


def bind_multiproc(folder: Path) -> None:
    """Record into prometheus_client multiprocess files under ``folder`` from now on (in this
    process and its children). A folder set in the environment by someone else (the serving
    supervisor for its workers, an operator) is kept. Collectors built before are rebuilt on
    the new folder (what they held in memory only is dropped)."""
    env = os.environ.get(MULTIPROC_ENV)
    if env and env not in _bound:
        folder = Path(env)
    folder.mkdir(parents=True, exist_ok=True)
    if _bound == [str(folder)] and env == str(folder):
        return
    os.environ[MULTIPROC_ENV] = str(folder)
    _bound[:] = [str(folder)]
    _record_with(MultiProcessValue())  # type: ignore[no-untyped-call]


def _record_with(value_class: type) -> None:
    """Build collectors with ``value_class`` from now on (multiprocess files, or memory):
    those built before are unregistered and rebuilt on first use."""
    values.ValueClass = value_class
    if metrics.cache_info().currsize:
        for collector in metrics().built():
            REGISTRY.unregister(collector)
        metrics.cache_clear()


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    # The newest value wins across processes: a batch command's gauge outlives its process.
    return Gauge(name, doc, labels, multiprocess_mode="mostrecent")


class Metrics:
    """The collectors, each built (and registered in the default registry) on first use: a
    process exposes only what it records (a worker shows no empty backtest families)."""

    @cached_property
    def data_bars_written(self) -> Counter:
        return Counter("data_bars_written", "Bars an ingest wrote (new or updated raw rows)",
                       ["symbol", "timeframe"])  # fmt: skip

    @cached_property
    def dq_fail(self) -> Counter:
        return Counter("dq_fail", "Data-quality failures found by an ingest, by rule", ["rule"])

    @cached_property
    def data_watermark_lag_seconds(self) -> Gauge:
        return _gauge("data_watermark_lag_seconds",
                      "Now minus the close of the newest ingested bar (the pipeline's watermark)",
                      ("symbol", "timeframe"))  # fmt: skip

    @cached_property
    def data_pipeline_lag_seconds(self) -> Gauge:
        return _gauge("data_pipeline_lag_seconds",
                      "Age of the newest live bar when it reached a serving worker",
                      ("symbol",))  # fmt: skip

    @cached_property
    def bt_run_duration(self) -> Gauge:
        return _gauge("bt_run_duration", "Wall time of the last backtest run, seconds (spec name)")

    @cached_property
    def backtest_duration_seconds(self) -> Histogram:
        return Histogram("core_backtest_duration_seconds", "Wall time of backtest runs",
                         buckets=DURATION_BUCKETS_SECONDS)  # fmt: skip

    @cached_property
    def retrain_duration_seconds(self) -> Histogram:
        return Histogram("core_retrain_duration_seconds", "Wall time of retrain flows, by outcome",
                         ["outcome"], buckets=DURATION_BUCKETS_SECONDS)  # fmt: skip

    @cached_property
    def retrain_runs(self) -> Counter:
        return Counter("core_retrain_runs", "Retrain flows that ended, by outcome", ["outcome"])

    @cached_property
    def theta_trials(self) -> Counter:
        return Counter("core_theta_trials", "θ search trials evaluated")

    @cached_property
    def theta_best_score(self) -> Gauge:
        return _gauge("core_theta_best_score", "Objective of the last search's best θ")

    @cached_property
    def inference_held(self) -> Counter:
        doc = "Pair-bars whose new entries were held back, by reason"
        return Counter("core_inference_held", doc, ["reason"])

    @cached_property
    def live_sharpe(self) -> Gauge:
        return _gauge("core_live_sharpe", "Live Sharpe ratio (annualized)", ("pair",))

    @cached_property
    def live_win_rate(self) -> Gauge:
        return _gauge("core_live_win_rate", "Live share of winning trades", ("pair",))

    @cached_property
    def live_max_drawdown_ratio(self) -> Gauge:
        return _gauge("core_live_max_drawdown_ratio", "Live maximum drawdown, share of peak",
                      ("pair",))  # fmt: skip

    @cached_property
    def live_pnl_usd(self) -> Gauge:
        return _gauge("core_live_pnl_usd", "Live realized P&L", ("pair",))

    @cached_property
    def live_trades(self) -> Gauge:
        return _gauge("core_live_trades", "Live closed trades in the KPI window", ("pair",))

    @cached_property
    def drift_psi(self) -> Gauge:
        return _gauge("core_drift_psi", "Population stability index of a feature", ("feature",))

    @cached_property
    def drift_alarm(self) -> Gauge:
        return _gauge("core_drift_alarm", "1 while a detector's alarm stands", ("detector",))

    @cached_property
    def detector_value(self) -> Gauge:
        return _gauge("core_detector_value", "A detector's statistic at its last check",
                      ("detector",))  # fmt: skip

    def built(self) -> list[Counter | Gauge | Histogram]:
        """The collectors built so far."""
        return [v for v in vars(self).values() if isinstance(v, Counter | Gauge | Histogram)]


@cache
def metrics() -> Metrics:
    """The collectors of this process."""
    return Metrics()
