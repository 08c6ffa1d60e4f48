"""Prometheus metrics of the workers (spec 002 Analytics・可観測性). Workers record into
prometheus_client's multiprocess files when ``PROMETHEUS_MULTIPROC_DIR`` is set (the supervisor
sets it before starting them and serves the sum); ``worker_up`` is the supervisor's own view."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from mlcore.observability import LATENCY_BUCKETS_SECONDS

# Bar-to-signal time inside the worker, per pair-bar, in base units (promtool refuses `_ms`):
# the spec's `inference_latency_ms` is the recording rule of deploy/prometheus/rules.yml over it.
INFERENCE_LATENCY_SECONDS = Histogram(
    "core_inference_latency_seconds",
    "Bar to signal inside a worker (features, AI1/AI2/AI3, decision, legs), per pair-bar",
    buckets=LATENCY_BUCKETS_SECONDS,
)
SIGNALS_TOTAL = Counter("signals_total", "Signals produced", ["action"])
SIGNALS_PER_MIN = Gauge(
    "signals_per_min", "Signals produced over the last minute", ["worker"],
    multiprocess_mode="mostrecent",  # keyed by worker: no pid label
)  # fmt: skip
BARS_REFUSED_TOTAL = Counter(
    "bars_refused_total", "Bars not turned into a signal, by reason", ["reason"]
)
OUTBOX_PENDING = Gauge(
    "outbox_pending", "Signals waiting in a worker's outbox for Redis", ["worker"],
    multiprocess_mode="mostrecent",  # keyed by worker: no pid label
)  # fmt: skip
SIGNALS_EXPIRED_TOTAL = Counter(
    "core_signals_expired",
    "Signals whose valid_until passed in the outbox before they could be sent (not published)",
)
# The spec's drift example (000 §10) watches the mean action: the mean signed side of the
# signals of the last minute (+1 long spread, -1 short, 0 exits), the newest worker's value.
MODEL_ACTION_MEAN = Gauge(
    "model_action_mean", "Mean signed side of the signals of the last minute",
    multiprocess_mode="mostrecent",
)  # fmt: skip
