"""Typed schemas of the feedback and observability policy files (spec 002 Analytics・可観測性,
観測設定, 運用 Runbook; 001 シグナルテーブル設定): ``observability_policy.yaml``,
``slack_policy.yaml``, ``analytics_policy.yaml`` and ``signals_policy.yaml``. Frozen, strict,
unknown keys rejected; no defaults (the files are the single source of truth)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mlcore.config._schemas import POLICY_SCHEMAS, Policy, Seconds

Port = Annotated[int, Field(ge=0, le=65535)]
Rate01 = Annotated[float, Field(ge=0, le=1)]


# observability_policy.yaml --------------------------------------------------------------
class MetricsPolicy(Policy):
    """Where the Prometheus endpoints listen (0: an ephemeral port, for tests)."""

    port: Port


class ObservabilityPolicy(Policy):
    """observability_policy.yaml: Prometheus endpoints and the freshness rule."""

    metrics: MetricsPolicy


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
