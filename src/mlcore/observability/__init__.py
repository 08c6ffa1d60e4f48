"""Observability: the Prometheus metrics of the batch side and the feedback loop, the endpoint
that serves them to a scraper, and the data pipeline's freshness rule (docs/observability.md)."""

from mlcore.observability._freshness import (
    FreshnessVerdict,
    HoldChange,
    judge,
    overdue_seconds,
    watermark_lag_seconds,
)
from mlcore.observability._metrics import (
    LATENCY_BUCKETS_SECONDS,
    MULTIPROC_ENV,
    Detector,
    DqRule,
    HoldReason,
    Metrics,
    Outcome,
    bind_multiproc,
    metrics,
)
from mlcore.observability._metrics_record import (
    LiveKpis,
    bind,
    label_sets,
    record_backtest,
    record_detector,
    record_inference_held,
    record_ingest,
    record_kpis,
    record_pipeline_lag,
    record_retrain,
    record_theta,
    record_watermark_lag,
)
from mlcore.observability._metrics_serve import (
    exposition,
    multiproc_registry,
    serve_multiproc,
    wait_forever,
)

__all__ = [
    "LATENCY_BUCKETS_SECONDS",
    "MULTIPROC_ENV",
    "Detector",
    "DqRule",
    "FreshnessVerdict",
    "HoldChange",
    "HoldReason",
    "LiveKpis",
    "Metrics",
    "Outcome",
    "bind",
    "bind_multiproc",
    "exposition",
    "judge",
    "label_sets",
    "metrics",
    "multiproc_registry",
    "overdue_seconds",
    "record_backtest",
    "record_detector",
    "record_inference_held",
    "record_ingest",
    "record_kpis",
    "record_pipeline_lag",
    "record_retrain",
    "record_theta",
    "record_watermark_lag",
    "serve_multiproc",
    "wait_forever",
    "watermark_lag_seconds",
]
