"""Prometheus metrics of the workers (spec 002 Analytics・可観測性). Workers record into
prometheus_client's multiprocess files when ``PROMETHEUS_MULTIPROC_DIR`` is set (the supervisor
sets it before starting them and serves the sum); ``worker_up`` is the supervisor's own view."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Bar-to-signal time inside the worker, per pair-bar: 10 µs to 200 ms (the spec's ceiling).
INFERENCE_LATENCY_MS = Histogram(
    "inference_latency_ms",
    "Bar to signal inside a worker (features, AI1/AI2/AI3, decision, legs), per pair-bar, ms",
    buckets=(0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10, 50, 200),
)
SIGNALS_TOTAL = Counter("signals_total", "Signals produced", ["action"])
SIGNALS_PER_MIN = Gauge(
    "signals_per_min", "Signals produced over the last minute", ["worker"],
    multiprocess_mode="liveall",
)  # fmt: skip
BARS_REFUSED_TOTAL = Counter(
    "bars_refused_total", "Bars not turned into a signal, by reason", ["reason"]
)
OUTBOX_PENDING = Gauge(
    "outbox_pending", "Signals waiting in a worker's outbox for Redis", ["worker"],
    multiprocess_mode="liveall",
)  # fmt: skip
SIGNALS_EXPIRED_TOTAL = Counter(
    "core_signals_expired",
    "Signals whose valid_until passed in the outbox before they could be sent (not published)",
)
