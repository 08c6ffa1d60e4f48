"""A training run: AI1 and AI3 on the universe's events, AI2 on its bars and the direction
ensemble on its instruments' bars, from the catalog, trained, calibrated and checked, written
as one model version with checksums.

``{models_root}/{model_version}/`` holds ``ai1.lgbm.txt``, ``ai2.lgbm.txt`` and ``ai3.lgbm.txt``
(LightGBM text models; AI3 = position scale on AI1's events and inputs),
``ai1_calibration.json`` / ``ai2_calibration.json``, the direction ensemble's
``ensemble_level{k}.*`` files per trained feature level (see :mod:`mlcore.models`),
``feature_schema.json``, ``params.yaml``, ``decision.json`` (the decision parameters, see
:mod:`mlcore.execution._params`),
``metrics.json``, ``dataset_index_filtered.json``, ``preprocess_report.json`` and
``checksums.json`` (SHA256 of each of those). These files depend only on the data, the
configuration and the seed: the same inputs give the same bytes. ``run.json`` adds what
differs between runs (when, which code) and is listed in the checksums too.
``model_version = yyyyMMdd_HHmm + "_" + short code hash``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.progress import Progress

from mlcore._progress import stage_done
from mlcore.config import AppConfig, sqlalchemy_postgres_url
from mlcore.data import Catalog, pairs_at, replace_dir
from mlcore.errors import MissingDataError
from mlcore.execution import DECISION_RECORD, ModelInputs, decision_record, record_bytes
from mlcore.features import PAIR_FEATURES, feature_levels, schema_bytes
from mlcore.labels import ai2_class_weights
from mlcore.training._binary import (
    BinaryTrainConfig,
    BinaryTrainResult,
    model_bytes,
    split_points,
    train_binary,
)
from mlcore.training._dataset import (
    LabelledPair,
    ai1_rows,
    ai2_rows,
    bar_numbers,
    direction_rows,
    label_pair,
)
from mlcore.training._direction import (
    DirectionTrainConfig,
    DirectionTrainResult,
    train_direction,
    tune_direction,
)
from mlcore.training._regress import RegressorResult, train_regressor
from mlcore.training._tune import Goal, SharedStudy, tune

_MIN_ROWS = 50  # fewer labelled rows cannot fill the CV folds, calibration and test parts


class TrainStatus(StrEnum):
    """A training run's ``retrain_status``: ``ok`` when every model is usable and none warned;
    ``weak`` when one warned (CV AUC within noise of 0.5, calibration worsening log loss: the
    version is judged by the backtest's adoption gates, its warnings named in the publish
    checklist's notes); ``blocked`` when a guard (canary, minimum rows, a degenerate model...)
    stopped it from being judged for adoption."""

    OK = "ok"
    WEAK = "weak"
    BLOCKED = "blocked"


def run_status(blocks: list[str], warnings: list[str]) -> TrainStatus:
    """A run's status from its models' blocks and warnings (a block wins)."""
    if blocks:
        return TrainStatus.BLOCKED
    return TrainStatus.WEAK if warnings else TrainStatus.OK


@dataclass
class TrainReport:
    """What a run wrote and measured."""

    model_version: str
    folder: Path
    status: TrainStatus
    blocked_reasons: list[str]
    metrics: dict[str, dict[str, Any]]
    events: dict[str, dict[str, int]]
    ai3: dict[str, Any]
    direction: dict[str, Any]
    #: weak but usable models (CV AUC within noise, calibration worsening log loss), each
    #: prefixed by its model; also in metrics.json under each model's ``warnings``
    warnings: list[str] = field(default_factory=list)
    #: one line per universe pair left out (not traded at the timeframe, or no bars there)
    skipped: list[str] = field(default_factory=list)


def shared_study(cfg: AppConfig) -> SharedStudy | None:
    """The PostgreSQL study storage training_policy.yaml asks for (optuna.storage postgres), so
    that every process training on the same inputs shares the trials; None: in process."""
    if cfg.training.optuna.storage != "postgres":
        return None
    return SharedStudy(sqlalchemy_postgres_url(cfg.env.postgres_url or ""))


def binary_config(cfg: AppConfig, seed: int | None = None) -> BinaryTrainConfig:
    """The binary trainer's settings from ``training_policy.yaml``."""
    t = cfg.training
    return BinaryTrainConfig(
        n_folds=t.cv.n_folds, purge_bars=t.cv.purge_bars, embargo_bars=t.cv.embargo_bars,
        min_block_bars=t.cv.min_block_bars, test_share=t.split.test_share,
        calibration_share=t.split.calibration_share,
        early_stopping_share=t.split.early_stopping_share,
        early_stopping_rounds=t.lightgbm.early_stopping_rounds, max_rounds=t.lightgbm.max_rounds,
        learning_rate=t.lightgbm.learning_rate, num_leaves=t.lightgbm.num_leaves,
        min_child_samples=t.lightgbm.min_child_samples, canary_block_bars=t.canary.block_bars,
        canary_repeats=t.canary.repeats, canary_tolerance=t.canary.tolerance,
        seed=t.seed if seed is None else seed,
    )  # fmt: skip


def direction_config(cfg: AppConfig, seed: int | None = None) -> DirectionTrainConfig:
    """The direction ensemble's settings from ``training_policy.yaml``."""
    d = cfg.training.direction
    return DirectionTrainConfig(
        base=binary_config(cfg, seed), weights=d.weights.model_dump(),
        rf_n_estimators=d.random_forest.n_estimators, rf_max_depth=d.random_forest.max_depth,
        rf_min_samples_leaf=d.random_forest.min_samples_leaf,
        rf_max_features=d.random_forest.max_features, rf_max_samples=d.random_forest.max_samples,
        smote=d.smote, smote_k_neighbors=d.smote_k_neighbors, threads=d.threads,
        canary_repeats=d.canary_repeats,
    )  # fmt: skip


# The checkout this package runs from (src/mlcore/training/ -> the repository).
CODE_ROOT = Path(__file__).resolve().parents[3]


def code_hash(repo: Path = CODE_ROOT) -> str:
    """The git commit of the code (``unknown`` outside a checkout), ``+dirty`` if modified."""
    try:
        head = subprocess.run(  # noqa: S603
            ["git", "-C", str(repo), "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(  # noqa: S603
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _free_version(root: Path, base: str) -> str:
    """``base``, or ``base_2``, ``base_3`` ... when runs share a minute and a commit."""
    version, k = base, 1
    while (root / version).exists():
        k += 1
        version = f"{base}_{k}"
    return version


def _json(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _clean_floats(obj: Any) -> Any:
    """NaN/inf (never valid JSON) become None."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_floats(v) for v in obj]
    return obj


@dataclass
class _Fitted:
    """One model's training outcome and what went into it."""

    result: BinaryTrainResult
    inputs: ModelInputs
    per_pair: dict[str, int]
    dropped: int
    clipped: dict[str, int]
    rows: int
    frame: pd.DataFrame


def _fit_model(
    cfg: AppConfig, timeframe: str, frames: dict[str, pd.DataFrame], columns: list[str],
    bcfg: BinaryTrainConfig, what: str, tuning: tuple[Goal, int, str],
    class_weight_cap: float | None = None, shared: SharedStudy | None = None,
) -> _Fitted:  # fmt: skip
    rows = pd.concat(list(frames.values()), ignore_index=True)
    finite = np.isfinite(rows[columns].to_numpy(dtype=np.float64)).all(axis=1)
    rows = rows[finite].sort_values(["t0_ts", "pair_id"], kind="stable").reset_index(drop=True)
    if len(rows) < _MIN_ROWS:
        raise MissingDataError(
            "DATA_ROWS_TOO_FEW",
            f"only {len(rows)} labelled {what} with complete features: too few to train "
            f"({_MIN_ROWS} needed) from pairs {sorted(frames)} at {timeframe}; ingest more "
            f"{timeframe} history for them first",
            details={"pairs": sorted(frames), "timeframe": timeframe, "rows": len(rows)},
        )
    cal_start, _ = split_points(len(rows), bcfg)
    if class_weight_cap is not None:
        # From the training part only: the test part's label rate must not shape the fit.
        train_labels = rows["label"].to_numpy()[:cal_start]
        bcfg = replace(bcfg, class_weight=ai2_class_weights(train_labels, class_weight_cap))
    scalable = [c for c in columns if c in PAIR_FEATURES]
    inputs = ModelInputs.fit(rows.iloc[:cal_start], columns, scalable, cfg.features.scaler_clip)
    X, clipped = inputs.transform(rows)
    t0 = bar_numbers(rows["t0_ts"].to_numpy(), timeframe)
    t1 = bar_numbers(rows["t1_ts"].to_numpy(), timeframe)
    y = rows["label"].to_numpy()
    goal, trials, label = tuning
    try:
        bcfg, tuned = tune(X, y, t0, t1, bcfg, goal, trials, label, shared)
        result = train_binary(X, y, t0, t1, bcfg, feature_names=columns)
    except ValueError as exc:
        raise ValueError(f"{label} ({len(rows)} {what}): {exc}") from None
    result.metrics["tuning"] = tuned
    result.metrics["split_ts"] = _split_ts(rows["t0_ts"].to_numpy(dtype=np.int64), bcfg)
    return _Fitted(
        result, inputs, {k: len(v) for k, v in frames.items()}, int((~finite).sum()), clipped,
        len(rows), rows,
    )  # fmt: skip


def _split_ts(ts: np.ndarray, bcfg: BinaryTrainConfig) -> dict[str, str]:
    """Where a model's calibration and test parts start in time (its rows in time order): the
    backtest searches θ on the first and judges adoption on the second, so neither sees data
    the model was fitted or tuned on."""
    cal_start, test_start = split_points(len(ts), bcfg)
    return {
        name: pd.Timestamp(int(ts[i]), tz="UTC").isoformat()
        for name, i in (("calibration_start", cal_start), ("test_start", test_start),
                        ("last_event", len(ts) - 1))
    }  # fmt: skip


def _model_files(name: str, fitted: _Fitted) -> dict[str, bytes]:
    suffix, body = model_bytes(fitted.result.model)
    return {
        f"{name}.{suffix}": body,
        f"{name}_calibration.json": _json(fitted.result.calibrator.to_dict()),
    }


def _fit_ai3(
    ai1: _Fitted, timeframe: str, bcfg: BinaryTrainConfig, trials: int,
    shared: SharedStudy | None = None,
) -> RegressorResult:  # fmt: skip
    """AI3 (position scale) on AI1's events and inputs, where the target is defined."""
    rows = ai1.frame[np.isfinite(ai1.frame["ai3"].to_numpy(dtype=np.float64))]
    X, _ = ai1.inputs.transform(rows)
    t0 = bar_numbers(rows["t0_ts"].to_numpy(), timeframe)
    t1 = bar_numbers(rows["t1_ts"].to_numpy(), timeframe)
    y = rows["ai3"].to_numpy(dtype=np.float64)
    bcfg, tuned = tune(X, y, t0, t1, bcfg, "rmse", trials, "AI3", shared)
    result = train_regressor(X, y, t0, t1, bcfg)
    result.metrics["tuning"] = tuned
    result.metrics["split_ts"] = _split_ts(rows["t0_ts"].to_numpy(dtype=np.int64), bcfg)
    return result


@dataclass
class _Direction:
    """The direction ensemble's levels: trained, or skipped with the reason."""

    trained: dict[int, DirectionTrainResult]
    skipped: dict[int, str]
    rows_per_symbol: dict[str, int]
    tuning: dict[str, Any]

    def metrics(self) -> dict[str, Any]:
        return {
            "levels": {str(k): r.metrics for k, r in sorted(self.trained.items())},
            "skipped_levels": {str(k): v for k, v in sorted(self.skipped.items())},
            "rows_per_symbol": self.rows_per_symbol,
            "tuning": self.tuning,
        }


def _fit_direction(
    cfg: AppConfig, cat: Catalog, symbols: list[str], timeframe: str, dcfg: DirectionTrainConfig,
    progress: Progress,
) -> _Direction:  # fmt: skip
    """The ensemble at each feature level whose columns exist, on the symbols' pooled bars;
    tuned once on level 3 (always computable), its settings shared by every level."""
    frames = {s: direction_rows(cfg, cat, s, timeframe) for s in symbols}
    rows = pd.concat(list(frames.values()), ignore_index=True)
    rows = rows.sort_values(["t0_ts", "symbol"], kind="stable").reset_index(drop=True)
    levels = feature_levels(cfg.feature_order.single)
    skipped: dict[int, str] = {}
    usable: dict[int, pd.DataFrame] = {}
    for level, cols in sorted(levels.items(), reverse=True):
        absent = [c for c in cols if c not in rows]
        if absent:
            skipped[level] = (
                f"features {absent} are not computed here (no external feature source is "
                "configured); served by the next level"
            )
            continue
        finite = np.isfinite(rows[list(cols)].to_numpy(dtype=np.float64)).all(axis=1)
        usable[level] = rows[finite].reset_index(drop=True)

    def arrays(level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r = usable[level]
        return (
            r[list(levels[level])].to_numpy(dtype=np.float64), r["label"].to_numpy(),
            bar_numbers(r["t0_ts"].to_numpy(), timeframe),
            bar_numbers(r["t1_ts"].to_numpy(), timeframe),
        )  # fmt: skip

    tuning: dict[str, Any] = {"trials": 0}
    if 3 in usable:
        dcfg, tuning = tune_direction(*arrays(3), dcfg, cfg.training.optuna.direction_trials)
        tuning["tuned_on_level"] = 3
        stage_done("tune direction", f"{tuning['trials']} trials")
    trained = {}
    for level in sorted(usable):
        step = progress.add_task(f"training direction ensemble level {level}", total=None)
        trained[level] = train_direction(*arrays(level), dcfg, level, list(levels[level]))
        stage_done(f"train direction level {level}", f"{len(usable[level]):,} rows")
        progress.remove_task(step)
    return _Direction(trained, skipped, {s: len(f) for s, f in frames.items()}, tuning)


def _shared_files(
    cfg: AppConfig, timeframe: str, seed: int, fitted: dict[str, _Fitted], ai3: RegressorResult,
    direction: _Direction, status: TrainStatus, reasons: list[str], data_hash: str,
    parts: list[dict[str, Any]],
) -> dict[str, bytes]:  # fmt: skip
    params = {
        "theta1": cfg.core.theta1_initial,
        "theta2": cfg.core.theta2_initial,
        "labels": cfg.core.labels_at(timeframe).model_dump(),
        "timeframe": timeframe,
        "seed": seed,
    }
    metrics: dict[str, Any] = {name: f.result.metrics for name, f in fitted.items()}
    metrics |= {"ai3": ai3.metrics, "direction": direction.metrics()}
    metrics |= {"retrain_status": status.value, "blocked_reasons": reasons}
    schema = {
        "schema_version": 1,
        "models": {name: f.inputs.to_schema() for name, f in fitted.items()},
        "direction_levels": {str(k): r.columns for k, r in sorted(direction.trained.items())},
    }
    prep = {
        name: {
            "rows": f.rows,
            "dropped_rows_with_missing_features": f.dropped,
            "clip": cfg.features.scaler_clip,
            "clipped_values": f.clipped,
            "scaled_columns": list(f.inputs.scaler.features),
            "passthrough_columns": list(f.inputs.passthrough),
        }
        for name, f in fitted.items()
    }
    index = {
        "timeframe": timeframe,
        "data_hash": data_hash,
        "partitions": [{k: p[k] for k in ("symbol", "month", "data_hash")} for p in parts],
        "rows_per_pair": {name: f.per_pair for name, f in fitted.items()},
        "direction_rows_per_symbol": direction.rows_per_symbol,
    }
    return {
        "feature_schema.json": schema_bytes(schema),
        "params.yaml": yaml.safe_dump(params, sort_keys=True).encode(),
        "metrics.json": _json(_clean_floats(metrics)),
        "preprocess_report.json": _json(prep),
        "dataset_index_filtered.json": _json(index),
    }


def train_models(
    cfg: AppConfig, cat: Catalog, timeframe: str, *, pair_ids: list[str] | None = None,
    seed: int | None = None, now: datetime | None = None, direction: bool = True,
    labelled: Mapping[str, LabelledPair] | None = None,
) -> TrainReport:  # fmt: skip
    """Train AI1 (reversion probability, on the pooled AI1 events), AI2 (risk, on every
    labelled bar, class weights capped at 1:class_weight_cap), AI3 (position scale) and,
    unless ``direction`` is False, the direction ensemble on the legs' bars, for the
    universe's pairs (or ``pair_ids``), and write them as one model version. ``labelled``
    holds pairs already featurised and labelled (by :func:`label_pair`, e.g. concurrently);
    the others are labelled here."""
    # A timeframe without labels or a time stop is refused before any data is looked for.
    cfg.core.labels_at(timeframe)
    cfg.backtest.execution_at(timeframe)
    choice = pairs_at(cfg, cat, timeframe, pair_ids)  # the skipped ones: report.skipped
    pairs = choice.pairs
    cols = cfg.feature_order.pair_models
    ai1: dict[str, pd.DataFrame] = {}
    ai2: dict[str, pd.DataFrame] = {}
    parts: list[dict[str, Any]] = []
    for pair in pairs:
        given = (labelled or {}).get(pair.pair_id)
        lp = given if given is not None else label_pair(cfg, cat, pair, timeframe)
        ai1[pair.pair_id] = ai1_rows(lp, list(cols.ai1))
        ai2[pair.pair_id] = ai2_rows(lp, list(cols.ai2))
        for sym in (pair.leg_a, pair.leg_b):
            parts += cat.partitions(timeframe, sym)
    bcfg = binary_config(cfg, seed)
    trials = cfg.training.optuna
    shared = shared_study(cfg)
    libs = cfg.training.library
    # Transient bars on the console (stderr): the printed summary stays the record.
    with Progress(console=Console(stderr=True), transient=True) as progress:
        step = progress.add_task("training AI1 (tuning, CV, fit, calibration, canary)", total=4)
        fitted = {
            "ai1": _fit_model(
                cfg, timeframe, ai1, list(cols.ai1), replace(bcfg, library=libs.ai1),
                "AI1 events", ("logloss", trials.ai1_trials, "AI1"), shared=shared,
            )
        }  # fmt: skip
        stage_done("train AI1", f"{sum(len(f) for f in ai1.values()):,} events")
        progress.update(step, advance=1, description="training AI2")
        cap = cfg.core.labels_at(timeframe).ai2.class_weight_cap
        fitted["ai2"] = _fit_model(
            cfg, timeframe, ai2, list(cols.ai2), replace(bcfg, library=libs.ai2), "AI2 bars",
            ("pr_auc", trials.ai2_trials, "AI2"), cap, shared,
        )  # fmt: skip
        stage_done("train AI2", f"{sum(len(f) for f in ai2.values()):,} bars")
        progress.update(step, advance=1, description="training AI3")
        ai3 = _fit_ai3(fitted["ai1"], timeframe, bcfg, trials.ai3_trials, shared)
        stage_done("train AI3")
        progress.update(step, advance=1, description="training the direction ensemble")
        symbols = list(dict.fromkeys(s for p in pairs for s in (p.leg_a, p.leg_b)))
        ensemble = _Direction({}, dict.fromkeys((1, 2, 3), "not requested"), {}, {})
        if direction:
            ensemble = _fit_direction(
                cfg, cat, symbols, timeframe, direction_config(cfg, seed), progress
            )  # fmt: skip
        progress.advance(step)
        stage_done("train direction", "trained" if direction else "not requested")
    reasons = [f"{name}: {r}" for name, f in fitted.items() for r in f.result.blocked_reasons]
    reasons += [f"ai3: {r}" for r in ai3.blocked_reasons]
    reasons += [f"direction: {r}" for d in ensemble.trained.values() for r in d.blocked_reasons]
    warnings = [f"{name}: {w}" for name, f in fitted.items() for w in f.result.warnings]
    status = run_status(reasons, warnings)
    data_hash = cat.data_hash(parts)
    code = code_hash()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d_%H%M")
    short = code[:7] if code != "unknown" else "nocode"
    version = _free_version(cfg.paths.models, f"{stamp}_{short}")
    files = _shared_files(
        cfg, timeframe, bcfg.seed, fitted, ai3, ensemble, status, reasons, data_hash, parts
    )  # fmt: skip
    # What decides the version's signals, fixed now: its backtest and its serving read it.
    files[DECISION_RECORD] = record_bytes(decision_record(cfg, timeframe, pairs))
    for name, f in fitted.items():
        files |= _model_files(name, f)
    for d in ensemble.trained.values():
        files |= d.files()
    files["ai3.lgbm.txt"] = ai3.model.booster_.model_to_string().encode()
    files["run.json"] = _json(
        {
            "model_version": version,
            "created_at": (now or datetime.now(UTC)).isoformat(),
            "code_hash": code,
            "data_hash": data_hash,
            "seed": bcfg.seed,
            "retrain_status": status.value,
        }
    )
    files["checksums.json"] = _json(
        {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())}
    )
    # All files appear at once or not at all: no half-written model version.
    folder = cfg.paths.models / version
    replace_dir(folder, files)
    return TrainReport(
        version, folder, status, reasons,
        {name: f.result.metrics for name, f in fitted.items()},
        {name: f.per_pair for name, f in fitted.items()},
        ai3.metrics, ensemble.metrics(), warnings, choice.skipped,
    )  # fmt: skip
