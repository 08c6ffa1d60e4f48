"""Typed schemas of the feedback and observability policy files (spec 002 Analytics・可観測性,
観測設定, 運用 Runbook; 001 シグナルテーブル設定): ``observability_policy.yaml``,
``slack_policy.yaml``, ``analytics_policy.yaml`` and ``signals_policy.yaml``. Frozen, strict,
unknown keys rejected; no defaults (the files are the single source of truth)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mlcore.config._schemas import POLICY_SCHEMAS, Policy, Seconds

Port = Annotated[int, Field(ge=0, le=65535)]


# observability_policy.yaml --------------------------------------------------------------
class MetricsPolicy(Policy):
    """Where ``mlcore metrics serve`` listens (0: an ephemeral port, for tests) and the
    prometheus_client multiprocess folder (relative to the archive) that the short-lived
    commands (ingest, backtest, flows) write their metrics to."""

    port: Port
    multiproc_dir: Annotated[str, Field(min_length=1, max_length=4096)]


class DataFreshnessPolicy(Policy):
    """The data pipeline's watermark rule (002 観測設定): ``watermark: ingest`` holds new entries
    while the newest ingested bar is overdue by more than the budget ``budget_from`` names;
    ``off`` leaves it to the per-bar freshness check alone."""

    watermark: Literal["ingest", "off"]
    budget_from: Literal[
        "pipeline_policy.freshness_budget_seconds", "serving_policy.freshness_budget_seconds"
    ]
    check_every_seconds: Annotated[float, Field(gt=0, le=3600)]


class ObservabilityPolicy(Policy):
    """observability_policy.yaml: Prometheus endpoints and the freshness rule."""

    metrics: MetricsPolicy
    data_freshness: DataFreshnessPolicy


POLICY_SCHEMAS["observability_policy"] = ObservabilityPolicy


# slack_policy.yaml ----------------------------------------------------------------------
class SlackPolicy(Policy):
    """slack_policy.yaml: where each severity of alert goes, templates, delivery retries."""

    channels: dict[Literal["critical", "error", "warning", "info"], str]


POLICY_SCHEMAS["slack_policy"] = SlackPolicy


# analytics_policy.yaml ------------------------------------------------------------------
class FillsPolicy(Policy):
    """How fills arrive (result.json drop folder, Redis stream) and how they are simulated."""

    stream: str


class KpiPolicy(Policy):
    """The live KPIs' rolling windows."""

    windows_days: Annotated[list[Annotated[int, Field(gt=0, le=3660)]], Field(min_length=1)]


class DriftPolicy(Policy):
    """Feature-drift and decay detectors: their false-alarm rate and windows."""

    false_alarm_rate: Annotated[float, Field(gt=0, lt=0.5)]


class AnalyticsPolicy(Policy):
    """analytics_policy.yaml: fills, live KPIs, drift and decay detectors."""

    fills: FillsPolicy
    kpi: KpiPolicy
    drift: DriftPolicy
    check_every_seconds: Seconds


POLICY_SCHEMAS["analytics_policy"] = AnalyticsPolicy


# signals_policy.yaml --------------------------------------------------------------------
class SignalsPolicy(Policy):
    """signals_policy.yaml: the signal tables and the signal archive (001 シグナルテーブル設定)."""

    signals_table: Literal["core.signals_live"]
    signals_history_table: Literal["core.signals_history"]
    archive_target: Literal["NAS", "LOCAL", "S3", "WASABI", "B2"]
    archive_path: Annotated[str, Field(min_length=1, max_length=4096)]
    live_days: Annotated[int, Field(gt=0, le=3660)]


POLICY_SCHEMAS["signals_policy"] = SignalsPolicy
