"""Typed schemas of the feedback and observability policy files (spec 002 Analytics・可観測性,
観測設定, 運用 Runbook; 001 シグナルテーブル設定): ``observability_policy.yaml``,
``slack_policy.yaml``, ``analytics_policy.yaml`` and ``signals_policy.yaml``. Frozen, strict,
unknown keys rejected; no defaults (the files are the single source of truth)."""

from __future__ import annotations

import ipaddress
import re
import string
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from mlcore.config._schemas import POLICY_SCHEMAS, Policy, PositiveInt, Seconds, TimeoutSeconds

Port = Annotated[int, Field(ge=0, le=65535)]
Rate01 = Annotated[float, Field(ge=0, le=1)]


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


class BlockRef(Policy):
    """The policy file holding a notification block (only slack_policy.yaml exists)."""

    block_ref: Literal["slack_policy.yaml"]


class NotificationsRef(Policy):
    """Where the notification blocks are defined (spec: ``notifications.slack.block_ref``)."""

    slack: BlockRef


class ObservabilityPolicy(Policy):
    """observability_policy.yaml: Prometheus endpoints and the freshness rule."""

    metrics: MetricsPolicy
    notifications: NotificationsRef
    data_freshness: DataFreshnessPolicy


POLICY_SCHEMAS["observability_policy"] = ObservabilityPolicy


# slack_policy.yaml ----------------------------------------------------------------------
def delivery_url_problem(url: str) -> str | None:
    """Why ``url`` cannot receive notifications (None: it can): https only, plain http only to
    a loopback host (a test receiver). The URL is never echoed (a webhook URL is a secret)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return "is not a usable URL (its port is not a number in 1-65535)"
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL with a host"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    if parts.scheme == "http" and not _loopback(host):
        return "must be https:// (plain http only to a loopback host such as 127.0.0.1)"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _delivery_url(url: str) -> str:
    problem = delivery_url_problem(url)
    if problem is not None:
        raise ValueError(f"the URL {problem}")
    return url


DeliveryUrl = Annotated[str, Field(max_length=2048), AfterValidator(_delivery_url)]
SeverityName = Literal["critical", "error", "warning", "info"]

#: The fields a template may name; anything else (attributes, indexes, format specs) is refused.
TEMPLATE_FIELDS = frozenset(
    {"code", "message", "severity", "source", "run_id", "scope", "raised_at", "alert_id"}
)
_CHANNEL_RE = re.compile(r"^#[a-z0-9][a-z0-9._-]{0,79}$")
_FAMILY_RE = re.compile(r"^(default|[A-Z][A-Z0-9_]{0,63})$")


def _template(text: str) -> str:
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"template {text[:60]!r}: {exc}") from None
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(
                f"template field {{{name}}} is not one of {sorted(TEMPLATE_FIELDS)} "
                "(no attributes, indexes, conversions or format specs)"
            )
    return text


def _channel(name: str) -> str:
    if not _CHANNEL_RE.fullmatch(name):
        raise ValueError(f"channel {name!r} is not a Slack channel name (#lowercase-name)")
    return name


Template = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_template)]
Channel = Annotated[str, AfterValidator(_channel)]


def _families(templates: dict[str, str]) -> dict[str, str]:
    bad = [k for k in templates if not _FAMILY_RE.fullmatch(k)]
    if bad:
        raise ValueError(
            f"template keys {bad} are not alert code prefixes (CORE_RETRAIN) or 'default'"
        )
    if "default" not in templates:
        raise ValueError("templates need a 'default' entry (alerts of no listed family)")
    return templates


class PagerDutyPolicy(Policy):
    """PagerDuty Events API v2: where critical alerts page (the routing key: ENV)."""

    events_url: DeliveryUrl
    source: Annotated[str, Field(min_length=1, max_length=255)]


class DeliveryPolicy(Policy):
    """How the notifier retries: capped exponential backoff, never giving up on a row."""

    timeout_seconds: TimeoutSeconds
    backoff_base_seconds: Seconds
    backoff_factor: Annotated[float, Field(ge=1, le=10)]
    backoff_max_seconds: Seconds
    retry_after_max_seconds: Seconds
    stuck_after_attempts: PositiveInt
    lease_seconds: Seconds
    batch_size: PositiveInt
    max_text_chars: Annotated[int, Field(ge=100, le=3000)]


class SlackPolicy(Policy):
    """slack_policy.yaml: where each severity of alert goes, templates, delivery retries."""

    channels: dict[SeverityName, Channel]
    templates: Annotated[dict[str, Template], AfterValidator(_families)]
    pagerduty: PagerDutyPolicy
    delivery: DeliveryPolicy

    @model_validator(mode="after")
    def _complete(self) -> SlackPolicy:
        missing = sorted(set(get_args(SeverityName)) - set(self.channels))
        if missing:
            raise ValueError(f"channels: no channel for severity {missing}")
        d = self.delivery
        if d.backoff_max_seconds < d.backoff_base_seconds:
            raise ValueError("delivery: backoff_max_seconds is below backoff_base_seconds")
        if d.lease_seconds <= d.timeout_seconds:
            raise ValueError("delivery: lease_seconds must exceed timeout_seconds (a send in "
                             "flight would be taken by another notifier)")  # fmt: skip
        return self


POLICY_SCHEMAS["slack_policy"] = SlackPolicy


# analytics_policy.yaml ------------------------------------------------------------------
class FillsSimulatePolicy(Policy):
    """`mlcore fills simulate`: the slippage draw and the delay of a simulated fill."""

    slippage_sd_bps: Annotated[float, Field(ge=0, le=1000)]
    seed: Annotated[int, Field(ge=0)]
    delay_seconds: Annotated[float, Field(ge=0, le=86_400)]


class FillsPolicy(Policy):
    """How fills arrive (result.json drop folder, Redis stream) and how they are simulated."""

    stream: Annotated[str, Field(min_length=1, max_length=200)]
    consumer_group: Annotated[str, Field(min_length=1, max_length=200)]
    stream_maxlen: Annotated[int, Field(gt=0)]
    read_batch: Annotated[int, Field(gt=0, le=10_000)]
    block_ms: Annotated[int, Field(ge=0, le=60_000)]
    drop_folder: Annotated[str, Field(min_length=1, max_length=4096)]
    done_folder: Annotated[str, Field(min_length=1, max_length=4096)]
    quarantine_folder: Annotated[str, Field(min_length=1, max_length=4096)]
    max_bytes: Annotated[int, Field(gt=0, le=10_000_000)]
    max_clock_skew_seconds: Annotated[float, Field(ge=0, le=3600)]
    simulate: FillsSimulatePolicy


class KpiPolicy(Policy):
    """The live KPIs' rolling windows and the inference-time SLO they count against."""

    windows_days: Annotated[list[Annotated[int, Field(gt=0, le=3660)]], Field(min_length=1)]
    #: a signal decided in more than this counts against the inference SLO (spec: 200 ms)
    inference_slo_seconds: Annotated[float, Field(gt=0, le=60)]


class DriftPolicy(Policy):
    """Feature-drift detectors (PSI and a mean-shift test per feature) with thresholds from a
    block-bootstrap null simulation of the training window."""

    false_alarm_rate: Annotated[float, Field(gt=0, lt=0.5)]
    live_window_bars: Annotated[int, Field(ge=20, le=1_000_000)]
    min_live_bars: Annotated[int, Field(ge=10, le=1_000_000)]
    min_training_bars: Annotated[int, Field(ge=50, le=100_000_000)]
    psi_bins: Annotated[int, Field(ge=2, le=100)]
    psi_epsilon: Annotated[float, Field(gt=0, lt=0.01)]
    block_length_rule: Literal["politis_white", "cube_root"]
    max_block_bars: Annotated[int, Field(ge=1, le=100_000)]
    bootstrap_draws: Annotated[int, Field(ge=100, le=1_000_000)]
    calibration_replicates: Annotated[int, Field(ge=0, le=1000)]
    calibration_draws: Annotated[int, Field(ge=100, le=1_000_000)]
    calibration_windows: Annotated[int, Field(ge=10, le=1_000_000)]
    calibration_power: Annotated[float, Field(ge=1, le=8)]
    min_training_to_live_ratio: Annotated[float, Field(ge=1, le=1000)]
    seed: Annotated[int, Field(ge=0, lt=2**32)]
    retrain_min_interval_seconds: Seconds

    @model_validator(mode="after")
    def _windows(self) -> DriftPolicy:
        if self.min_live_bars > self.live_window_bars:
            raise ValueError(
                f"min_live_bars {self.min_live_bars} is over live_window_bars "
                f"{self.live_window_bars}: no live window could be judged"
            )
        if self.min_training_bars < self.min_training_to_live_ratio * self.live_window_bars:
            raise ValueError(
                f"min_training_bars {self.min_training_bars} is under min_training_to_live_ratio "
                f"{self.min_training_to_live_ratio} x live_window_bars {self.live_window_bars}: "
                "a full live window could never be judged"
            )
        return self


class DecayPolicy(Policy):
    """Decay detectors (live-vs-backtest win-rate gap, risk-gate pass rate, risk_flag runs)
    and the two adoption checks against the previously deployed version."""

    win_gap_points: Annotated[float, Field(gt=0, lt=100)]
    win_gap_confidence: Annotated[float, Field(gt=0.5, lt=1)]
    power: Annotated[float, Field(gt=0.5, lt=1)]
    pass_rate_band: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)
    ]
    pass_rate_window_signals: Annotated[int, Field(ge=10, le=1_000_000)]
    pass_rate_windows: Annotated[int, Field(ge=1, le=1000)]
    risk_flag_run: Annotated[int, Field(ge=2, le=100_000)]
    max_auc_drop: Annotated[float, Field(ge=0, lt=1)]
    min_sharpe_ratio_vs_previous: Annotated[float, Field(gt=0, le=1)]

    @model_validator(mode="after")
    def _band(self) -> DecayPolicy:
        low, high = self.pass_rate_band
        if not low < high:
            raise ValueError(
                f"pass_rate_band {self.pass_rate_band} must be [low, high], low < high"
            )
        return self


class AnalyticsPolicy(Policy):
    """analytics_policy.yaml: fills, live KPIs, drift and decay detectors."""

    fills: FillsPolicy
    kpi: KpiPolicy
    drift: DriftPolicy
    decay: DecayPolicy
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
