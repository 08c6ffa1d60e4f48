"""The detectors' edge (``mlcore feedback check``): read the deployed version's training
window and the newest live window of its features from the feature cache, the served signals
and (once fills land) the live trades; run every detector; record each detector's values and
verdict in ``audit.analytics_actions`` (actor ``system:feedback``), raise an alert for each
that fired, and start ``core_retrain_flow`` with the reason when drift or decay fired, at most
once per ``retrain_min_interval_seconds`` (a trigger inside it is recorded as suppressed)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import inspect, select

from mlcore import observability as obs
from mlcore.config import AppConfig
from mlcore.data import write_atomic
from mlcore.errors import MissingDataError, MlcoreError, Severity
from mlcore.execution import read_params
from mlcore.features import load_pair_features
from mlcore.feedback._calibrate import CalibrationPlan, calibrate
from mlcore.feedback._decay import (
    Verdict,
    pass_rate_breach,
    pass_rate_windows,
    risk_flag_run,
    win_rate_gap,
)
from mlcore.feedback._drift import Reference, reference
from mlcore.feedback._nullsim import (
    BlockRule,
    NullTable,
    assess_drift,
    block_length,
    min_draws,
    null_table,
    scaled,
)
from mlcore.registry import ActionResult, Registry, registry_for

ACTOR = "system:feedback"
CHECK_ACTION = "feedback_check"
RETRAIN_ACTION = "feedback_retrain"


class Detector(StrEnum):
    """The detectors, with the alert code each raises when it fires."""

    DRIFT = "FEEDBACK_DRIFT_FEATURE"
    WIN_RATE = "FEEDBACK_DECAY_WINRATE"
    RISK_GATE = "FEEDBACK_RISK_GATE"
    RISK_FLAG_RUN = "FEEDBACK_RISK_FLAGRUN"


@dataclass(frozen=True)
class DetectorResult:
    """One detector's verdict on one pair, with the values it decided on."""

    detector: Detector
    pair_id: str
    verdict: Verdict
    reason: str
    values: dict[str, float | int | str | list[str] | None] = field(default_factory=dict)


class RetrainDecision(StrEnum):
    """What the check did about retraining."""

    NOT_NEEDED = "not_needed"
    STARTED = "started"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class CheckOutcome:
    """A feedback check of the deployed version."""

    model_version: str
    results: tuple[DetectorResult, ...]
    retrain: RetrainDecision
    retrain_reason: str
    retrain_run: str | None
    retrain_message: str

    @property
    def fired(self) -> tuple[DetectorResult, ...]:
        """The detectors that fired."""
        return tuple(r for r in self.results if r.verdict is Verdict.FIRED)


Retrain = Callable[[AppConfig, str], str]


def _run_retrain(cfg: AppConfig, reason: str) -> str:
    """Start core_retrain_flow now (this process) with ``reason``; the run's outcome."""
    from mlcore.flows import run_retrain

    outcome = run_retrain(cfg, reason=reason)
    return f"run {outcome.run_id} {outcome.status}: {outcome.message}"


# -- reading the windows -------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise MissingDataError("FEEDBACK_VERSION_UNREADABLE",
                               f"{path}: {type(exc).__name__}: {exc}") from None  # fmt: skip
    if not isinstance(doc, dict):
        raise MissingDataError("FEEDBACK_VERSION_UNREADABLE", f"{path}: not a JSON object")
    return doc


def training_end(folder: Path) -> pd.Timestamp:
    """Where the version's training part ends: AI1's calibration start (metrics.json split_ts);
    the model was fitted on the features before it."""
    metrics = _read_json(folder / "metrics.json")
    try:
        return pd.Timestamp(metrics["ai1"]["split_ts"]["calibration_start"]).tz_convert(UTC)
    except (KeyError, TypeError, ValueError):
        raise MissingDataError(
            "FEEDBACK_VERSION_UNREADABLE",
            f"{folder / 'metrics.json'} has no ai1.split_ts.calibration_start: the version does "
            "not say where its training window ends",
        ) from None


@dataclass(frozen=True)
class Windows:
    """A pair's training and live feature windows (rows: bars, columns: ``features``)."""

    features: tuple[str, ...]
    train: np.ndarray
    live: np.ndarray
    live_from: str | None
    live_to: str | None


def pair_windows(
    frame: pd.DataFrame, features: list[str], train_end: pd.Timestamp, live_bars: int
) -> Windows:
    """Training window: the bars before ``train_end``; live window: the newest ``live_bars``
    bars after the training window's end (fewer if fewer exist). Columns the frame lacks
    are left out."""
    cols = tuple(c for c in features if c in frame.columns)
    ts = pd.to_datetime(frame["ts"], utc=True)
    before = (ts < train_end).to_numpy()
    values = frame[list(cols)].to_numpy(dtype=np.float64)
    live = values[~before][-live_bars:] if live_bars > 0 else values[:0]
    live_ts = ts[~before].iloc[-len(live) :] if len(live) else ts.iloc[:0]
    first = live_ts.iloc[0].isoformat() if len(live_ts) else None
    last = live_ts.iloc[-1].isoformat() if len(live_ts) else None
    return Windows(cols, values[before], live, first, last)


# -- the null tables, cached per version, pair and window size ------------------------------
def _null_path(cfg: AppConfig, version: str, pair_id: str, key: str) -> Path:
    return cfg.paths.archive / "feedback" / "null" / version / pair_id / f"{key}.npz"


def cached_null(
    cfg: AppConfig, version: str, pair_id: str, train: np.ndarray, ref: Reference,
    window_bars: int,
) -> NullTable:  # fmt: skip
    """The null table for a window size, from the archive's cache when the training window,
    the window size and the simulation settings are the same, else simulated and stored."""
    p = cfg.analytics.drift
    block = block_length(train, BlockRule(p.block_length_rule), p.max_block_bars)
    draws = max(p.bootstrap_draws, min_draws(2 * train.shape[1], p.false_alarm_rate))
    plan = CalibrationPlan(p.calibration_replicates, p.calibration_draws,
                           p.calibration_windows, p.calibration_power, p.psi_bins)  # fmt: skip
    digest = hashlib.sha256(np.ascontiguousarray(train).tobytes())
    digest.update(json.dumps([window_bars, block, draws, p.seed, p.psi_bins, p.psi_epsilon,
                              list(ref.features), p.false_alarm_rate, plan.replicates,
                              plan.draws, plan.windows, plan.power]).encode())  # fmt: skip
    path = _null_path(cfg, version, pair_id, f"w{window_bars}_{digest.hexdigest()[:16]}")
    try:
        with np.load(path) as z:
            return NullTable(int(z["window_bars"]), int(z["block_bars"]), z["psi"], z["shift"],
                             z["psi_scale"], z["shift_scale"])  # fmt: skip
    except (OSError, ValueError, KeyError):
        pass  # absent or unreadable: simulate again
    table = null_table(train, ref, window_bars, block, draws, p.seed)
    if plan.replicates:
        cal = calibrate(train, ref, window_bars, block, p.false_alarm_rate, plan, p.seed)
        table = scaled(table, cal.psi_scale, cal.shift_scale)
    buf = io.BytesIO()
    np.savez(buf, window_bars=table.window_bars, block_bars=table.block_bars, psi=table.psi,
             shift=table.shift, psi_scale=table.psi_scale,
             shift_scale=table.shift_scale)  # fmt: skip
    write_atomic(path, buf.getvalue())
    return table


# -- the detectors on one pair --------------------------------------------------------------
def drift_result(cfg: AppConfig, version: str, pair_id: str, w: Windows) -> DetectorResult:
    """The drift detector on a pair's windows (inconclusive when either is too short)."""
    p = cfg.analytics.drift
    base: dict[str, Any] = {"train_bars": len(w.train), "live_bars": len(w.live),
                            "live_from": w.live_from, "live_to": w.live_to}  # fmt: skip
    if not w.features:
        return DetectorResult(Detector.DRIFT, pair_id, Verdict.INCONCLUSIVE,
                              "no model feature in the feature cache", base)  # fmt: skip
    if len(w.train) < p.min_training_bars or len(w.live) < p.min_live_bars:
        why = (f"{len(w.train)} training bars (needs {p.min_training_bars}), {len(w.live)} live "
               f"bars (needs {p.min_live_bars})")  # fmt: skip
        return DetectorResult(Detector.DRIFT, pair_id, Verdict.INCONCLUSIVE, why, base)
    if len(w.train) < p.min_training_to_live_ratio * len(w.live):
        why = (f"{len(w.train)} training bars for {len(w.live)} live bars: under "
               f"min_training_to_live_ratio {p.min_training_to_live_ratio}; the training "
               "window's own sampling error would dominate the false-alarm rate")  # fmt: skip
        return DetectorResult(Detector.DRIFT, pair_id, Verdict.INCONCLUSIVE, why, base)
    ref = reference(w.train, w.features, p.psi_bins, p.psi_epsilon)
    table = cached_null(cfg, version, pair_id, w.train, ref, len(w.live))
    report = assess_drift(ref, table, w.live, p.false_alarm_rate)
    values = base | {"block_bars": report.block_bars, "draws": report.draws,
                     "alpha": report.alpha, "drifted": list(report.drifted)}  # fmt: skip
    for j, f in enumerate(report.features):
        values |= {f"psi.{f.feature}": _num(f.psi), f"psi_threshold.{f.feature}": f.psi_threshold,
                   f"shift.{f.feature}": _num(f.shift),
                   f"shift_threshold.{f.feature}": f.shift_threshold,
                   f"psi_scale.{f.feature}": float(table.psi_scale[j]),
                   f"shift_scale.{f.feature}": float(table.shift_scale[j])}  # fmt: skip
    worst = sorted(report.features, key=lambda f: min(_p(f.psi_p), _p(f.shift_p)))[:3]
    shown = "; ".join(f"{f.feature} PSI {f.psi:.3f} (q {f.psi_threshold:.3f}, p {f.psi_p:.4f}), "
                      f"shift {f.shift:.2f} (q {f.shift_threshold:.2f}, p {f.shift_p:.4f})"
                      for f in worst)  # fmt: skip
    fired = bool(report.drifted)
    why = (f"{'drift in ' + ', '.join(report.drifted) if fired else 'no drift'} over "
           f"{len(w.live)} live bars (Holm at {p.false_alarm_rate:g}, {report.draws} null draws, "
           f"block {report.block_bars}); {shown}")  # fmt: skip
    return DetectorResult(Detector.DRIFT, pair_id, Verdict.FIRED if fired else Verdict.QUIET,
                          why, values)  # fmt: skip


def _p(v: float) -> float:
    return v if np.isfinite(v) else 2.0


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def signal_results(cfg: AppConfig, registry: Registry, version: str,
                   pair_id: str) -> list[DetectorResult]:  # fmt: skip
    """The risk-gate pass-rate and risk_flag-run detectors on the version's served signals."""
    from mlcore.registry._tables import signals_live

    d = cfg.analytics.decay
    t = signals_live
    query = (select(t.c.risk_score, t.c.theta2).where(t.c.model_version == version)
             .where(t.c.pair_id == pair_id).order_by(t.c.ts))  # fmt: skip
    with registry.engine.connect() as conn:
        rows = conn.execute(query).all()
    scores = [float(r[0]) for r in rows]
    theta2 = [float(r[1]) for r in rows]
    need = d.pass_rate_window_signals * d.pass_rate_windows
    rates = pass_rate_windows(scores[-need:], theta2[-need:], d.pass_rate_window_signals)
    gate = pass_rate_breach(rates, (d.pass_rate_band[0], d.pass_rate_band[1]), d.pass_rate_windows)
    flags = [s >= th for s, th in zip(scores, theta2, strict=True)]
    run = risk_flag_run(flags, d.risk_flag_run)
    return [
        DetectorResult(Detector.RISK_GATE, pair_id, gate.verdict, gate.reason,
                       {"signals": len(rows), "pass_rates": [f"{r:.4f}" for r in rates],
                        "run": gate.run}),
        DetectorResult(Detector.RISK_FLAG_RUN, pair_id, run.verdict, run.reason,
                       {"signals": len(rows), "run": run.run}),
    ]  # fmt: skip


def win_rate_result(cfg: AppConfig, registry: Registry, version: str,
                    pair_id: str) -> DetectorResult:  # fmt: skip
    """The live-vs-backtest win-rate gap of the version's live trades (``core.live_trades``)
    against its backtest record; inconclusive without either."""
    from mlcore.feedback._kpis_live import backtest_reference, live_performance

    d = cfg.analytics.decay
    if not inspect(registry.engine).has_table("live_trades", schema=_core_schema(registry)):
        return DetectorResult(Detector.WIN_RATE, pair_id, Verdict.INCONCLUSIVE,
                              "no live trades yet (core.live_trades does not exist)")  # fmt: skip
    try:
        bt_rate = backtest_reference(cfg, version).win_rate
    except MlcoreError as exc:
        return DetectorResult(Detector.WIN_RATE, pair_id, Verdict.INCONCLUSIVE, exc.message)
    live = live_performance(registry.engine, model_version=version, pair_id=pair_id, since=None)
    n, rate = int(live.n_trades), live.win_rate
    if n == 0 or rate is None or bt_rate is None:
        return DetectorResult(Detector.WIN_RATE, pair_id, Verdict.INCONCLUSIVE,
                              f"{n} live trades; backtest win rate {bt_rate}")  # fmt: skip
    gap = win_rate_gap(round(rate * n), n, float(bt_rate), d.win_gap_points, d.win_gap_confidence)
    return DetectorResult(Detector.WIN_RATE, pair_id, gap.verdict, gap.reason,
                          {"live_trades": n, "live_win_rate": gap.live_win_rate,
                           "backtest_win_rate": gap.backtest_win_rate,
                           "gap_low_points": gap.gap_low_points})  # fmt: skip


def _core_schema(registry: Registry) -> str | None:
    return None if registry.engine.dialect.name == "sqlite" else "core"


# -- the check --------------------------------------------------------------------------------
def _record(registry: Registry, action: str, reason: str, result: ActionResult,
            details: dict[str, Any]) -> int:  # fmt: skip
    plain = json.loads(json.dumps(details, default=str))
    return registry.record_action(
        action, actor=ACTOR, role="system", reason=reason[:1000], request_id=uuid.uuid4().hex,
        before=None, after=None, result=result, details=plain,
    )  # fmt: skip


def last_triggered(registry: Registry) -> datetime | None:
    """When the newest retrain this check started was recorded (None: never)."""
    started = [a for a in registry.actions(action=RETRAIN_ACTION) if a.result == ActionResult.OK]
    return max((a.occurred_at for a in started), default=None)


def check_feedback(
    cfg: AppConfig, *, retrain: Retrain = _run_retrain, now: datetime | None = None
) -> CheckOutcome:
    """Run every detector on the deployed version, record and alert, and start a retrain when
    drift or decay fired (rate-limited). ``MissingDataError`` when no version is deployed or
    its files do not say what it was trained on."""
    registry = registry_for(cfg)
    deployed = registry.deployed()
    if deployed is None:
        raise MissingDataError("FEEDBACK_CHECK_NO_VERSION",
                               "no model version is deployed: nothing to check")  # fmt: skip
    version = deployed.model_version
    folder = registry.served_folder(version)
    try:
        params = read_params(folder, deployed.checksums)
    except ValueError as exc:
        raise MissingDataError("FEEDBACK_VERSION_UNREADABLE", f"{folder}: {exc}") from None
    train_end = training_end(folder)
    features = list(cfg.feature_order.pair_models.ai2)
    results: list[DetectorResult] = []
    for pair_id in params.pair_ids():
        try:
            frame = load_pair_features(cfg, pair_id, params.timeframe)
            windows = pair_windows(frame, features, train_end, cfg.analytics.drift.live_window_bars)
            results.append(drift_result(cfg, version, pair_id, windows))
        except (MissingDataError, ValueError, KeyError) as exc:
            why = exc.message if isinstance(exc, MlcoreError) else f"{type(exc).__name__}: {exc}"
            results.append(DetectorResult(Detector.DRIFT, pair_id, Verdict.INCONCLUSIVE, why))
        results.append(win_rate_result(cfg, registry, version, pair_id))
        results.extend(signal_results(cfg, registry, version, pair_id))
    channel = cfg.retrain.notification_channel
    for r in results:
        details = {"model_version": version, "pair_id": r.pair_id, "detector": r.detector.name,
                   "verdict": r.verdict.value, "values": r.values}  # fmt: skip
        _record(registry, CHECK_ACTION, f"{r.detector.name} {r.pair_id}: {r.reason}",
                ActionResult.OK, details)  # fmt: skip
        if r.verdict is Verdict.FIRED:
            registry.alert_log.raise_alert(
                r.detector.value, f"{version} {r.pair_id}: {r.reason}"[:2000], channel=channel,
                severity=Severity.WARNING, details=details)  # fmt: skip
    _gauges(cfg, results)
    fired = [r for r in results if r.verdict is Verdict.FIRED]
    if not fired:
        return CheckOutcome(version, tuple(results), RetrainDecision.NOT_NEEDED, "", None,
                            "no detector fired")  # fmt: skip
    reason = f"feedback check of {version}: " + "; ".join(
        f"{r.detector.name} {r.pair_id}" for r in fired
    )
    return _trigger(cfg, registry, version, tuple(results), reason, retrain, now)


_GAUGE = {Detector.DRIFT: obs.Detector.FEATURE_DRIFT, Detector.WIN_RATE: obs.Detector.WIN_RATE_GAP,
          Detector.RISK_GATE: obs.Detector.RISK_GATE_PASS_RATE,
          Detector.RISK_FLAG_RUN: obs.Detector.RISK_FLAG_RUNS}  # fmt: skip


def _gauges(cfg: AppConfig, results: list[DetectorResult]) -> None:
    """Each detector's alarm (any pair fired) as ``core_drift_alarm{detector}``, and the
    features' PSI (the largest over the pairs) as ``core_drift_psi{feature}``."""
    obs.bind(cfg)
    for det, gauge in _GAUGE.items():
        mine = [r for r in results if r.detector is det]
        if not mine:
            continue
        psi: dict[str, float] = {}
        for r in mine:
            for key, value in r.values.items():
                if key.startswith("psi.") and isinstance(value, int | float):
                    feature = key[len("psi.") :]
                    psi[feature] = max(psi.get(feature, float("-inf")), float(value))
        obs.record_detector(cfg, gauge, alarm=any(r.verdict is Verdict.FIRED for r in mine),
                            psi_by_feature=psi or None)  # fmt: skip


def _trigger(cfg: AppConfig, registry: Registry, version: str,
             results: tuple[DetectorResult, ...], reason: str, retrain: Retrain,
             now: datetime | None) -> CheckOutcome:  # fmt: skip
    """Start the retrain unless one was triggered within the minimum interval."""
    stamp = now or datetime.now(UTC)
    gap_s = cfg.analytics.drift.retrain_min_interval_seconds
    last = last_triggered(registry)
    channel = cfg.retrain.notification_channel
    if last is not None and stamp - last < timedelta(seconds=gap_s):
        why = (f"{reason}; suppressed: the last triggered retrain was at {last:%Y-%m-%d %H:%M:%S}"
               f" UTC, less than retrain_min_interval_seconds ({gap_s:g}) ago")  # fmt: skip
        _record(registry, RETRAIN_ACTION, why, ActionResult.REFUSED,
                {"model_version": version, "last_triggered": last.isoformat()})  # fmt: skip
        registry.alert_log.raise_alert("FEEDBACK_RETRAIN_SUPPRESSED", why[:2000], channel=channel,
                                       severity=Severity.INFO)  # fmt: skip
        return CheckOutcome(version, results, RetrainDecision.SUPPRESSED, reason, None, why)
    # Recorded before the run starts: a check running meanwhile sees it and holds back.
    _record(registry, RETRAIN_ACTION, reason, ActionResult.OK, {"model_version": version})
    registry.alert_log.raise_alert("FEEDBACK_RETRAIN_STARTED", reason[:2000], channel=channel,
                                   severity=Severity.WARNING)  # fmt: skip
    before = {r.run_id for r in registry.runs()}
    try:
        message = retrain(cfg, reason)
    except (MlcoreError, ValueError, RuntimeError, OSError) as exc:
        # The run recorded its own failure (audit.retrain_runs, its alert); the check stands.
        message = f"the retrain ended in {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    started = [r.run_id for r in registry.runs() if r.run_id not in before]
    return CheckOutcome(version, results, RetrainDecision.STARTED, reason,
                        started[0] if started else None, message)  # fmt: skip
