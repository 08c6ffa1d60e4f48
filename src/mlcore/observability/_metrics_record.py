"""The typed API the producers record through. Every label value is checked against a bounded
set (the universe's pairs and instruments, feature_order's names, the enums of
:mod:`mlcore.observability._metrics`): an id or a timestamp can never become a label."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ParamSpec

from mlcore.config import TIMEFRAMES, AppConfig
from mlcore.observability._metrics import (
    Detector,
    DqRule,
    HoldReason,
    Outcome,
    bind_multiproc,
    metrics,
)

OTHER = "other"  # an instrument outside universe.yaml (ingest takes any symbol)
log = logging.getLogger("mlcore.observability")
P = ParamSpec("P")


def _never_breaks(record: Callable[P, None]) -> Callable[P, None]:
    """A metrics file that cannot be written (disk full, folder gone) is logged, never raised:
    the ingest, backtest or worker it measures goes on. A label outside its set still raises."""

    @functools.wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except OSError as exc:
            log.warning("metrics not recorded by %s: %s", record.__name__, exc)

    return guarded


@dataclass(frozen=True)
class LiveKpis:
    """One pair's live KPIs over the analytics window (computed by the feedback stage)."""

    pair_id: str
    sharpe: float
    win_rate: float
    max_drawdown_ratio: float
    pnl_usd: float
    trades: int


@_never_breaks
def bind(cfg: AppConfig) -> None:
    """Record this process's metrics into observability_policy metrics.multiproc_dir (for
    ``mlcore metrics serve``); a folder already set in the environment is kept."""
    bind_multiproc(cfg.paths.archive / cfg.observability.metrics.multiproc_dir)


def label_sets(cfg: AppConfig) -> dict[str, frozenset[str]]:
    """Every label this module writes and the values it may take."""
    order = cfg.feature_order
    single, pair = order.single, order.pair_models
    features = {*single.level3_basic, *single.level2_strategy_signals, *single.level1_external,
                *pair.ai1, *pair.ai2}  # fmt: skip
    return {
        "symbol": frozenset({*cfg.universe.instruments, OTHER}),
        "timeframe": frozenset(TIMEFRAMES),
        "rule": frozenset(DqRule),
        "outcome": frozenset(Outcome),
        "reason": frozenset(HoldReason),
        "pair": frozenset(p.pair_id for p in cfg.universe.pairs),
        "feature": frozenset(features),
        "detector": frozenset(Detector),
    }


def _checked(cfg: AppConfig, label: str, value: str) -> str:
    if value not in label_sets(cfg)[label]:
        raise ValueError(f"metric label {label}={value!r} is not one of the bounded values")
    return value


def _symbol(cfg: AppConfig, symbol: str) -> str:
    return symbol if symbol in cfg.universe.instruments else OTHER


@_never_breaks
def record_ingest(
    cfg: AppConfig,
    symbol: str,
    timeframe: str,
    bars_written: int,
    dq_failures: Mapping[DqRule, int],
) -> None:
    """Count an ingest's written bars and its data-quality failures by rule."""
    m = metrics()
    tf = _checked(cfg, "timeframe", timeframe)
    m.data_bars_written.labels(_symbol(cfg, symbol), tf).inc(max(bars_written, 0))
    for rule in DqRule:  # every rule's series exists (at 0): rate() and alerts see the first
        m.dq_fail.labels(rule.value).inc(max(dq_failures.get(rule, 0), 0))


@_never_breaks
def record_watermark_lag(cfg: AppConfig, symbol: str, timeframe: str, lag_seconds: float) -> None:
    """Set the pipeline watermark's lag of one instrument."""
    tf = _checked(cfg, "timeframe", timeframe)
    metrics().data_watermark_lag_seconds.labels(_symbol(cfg, symbol), tf).set(lag_seconds)


@_never_breaks
def record_pipeline_lag(cfg: AppConfig, symbol: str, lag_seconds: float) -> None:
    """Set the age of the newest live bar a worker received."""
    metrics().data_pipeline_lag_seconds.labels(_symbol(cfg, symbol)).set(lag_seconds)


@_never_breaks
def record_backtest(duration_seconds: float) -> None:
    """Record one backtest run's wall time (``bt_run_duration`` and the histogram)."""
    m = metrics()
    m.bt_run_duration.set(duration_seconds)
    m.backtest_duration_seconds.observe(duration_seconds)


@_never_breaks
def record_retrain(duration_seconds: float, outcome: Outcome) -> None:
    """Record one retrain flow's wall time and how it ended."""
    m = metrics()
    m.retrain_duration_seconds.labels(Outcome(outcome).value).observe(duration_seconds)
    for o in Outcome:  # every outcome's series exists: the first failure is an increase
        m.retrain_runs.labels(o.value).inc(1 if o == outcome else 0)


@_never_breaks
def record_theta(trials: int, best_score: float | None) -> None:
    """Count a θ search's trials and set its best objective (None: nothing feasible)."""
    m = metrics()
    m.theta_trials.inc(max(trials, 0))
    if best_score is not None and best_score == best_score:
        m.theta_best_score.set(best_score)


@_never_breaks
def record_inference_held(reason: HoldReason, n: int = 1) -> None:
    """Count pair-bars whose new entries a worker held back."""
    metrics().inference_held.labels(HoldReason(reason).value).inc(n)


@_never_breaks
def record_kpis(cfg: AppConfig, kpis: Iterable[LiveKpis]) -> None:
    """Set the live KPI gauges of each pair."""
    m = metrics()
    for k in kpis:
        pair = _checked(cfg, "pair", k.pair_id)
        m.live_sharpe.labels(pair).set(k.sharpe)
        m.live_win_rate.labels(pair).set(k.win_rate)
        m.live_max_drawdown_ratio.labels(pair).set(k.max_drawdown_ratio)
        m.live_pnl_usd.labels(pair).set(k.pnl_usd)
        m.live_trades.labels(pair).set(k.trades)


@_never_breaks
def record_detector(
    cfg: AppConfig,
    detector: Detector,
    *,
    alarm: bool,
    value: float | None = None,
    psi_by_feature: Mapping[str, float] | None = None,
) -> None:
    """Set a detector's alarm state, its statistic and (feature drift) each feature's PSI."""
    m = metrics()
    name = Detector(detector).value
    m.drift_alarm.labels(name).set(1.0 if alarm else 0.0)
    if value is not None:
        m.detector_value.labels(name).set(value)
    for feature, psi in (psi_by_feature or {}).items():
        m.drift_psi.labels(_checked(cfg, "feature", feature)).set(psi)
