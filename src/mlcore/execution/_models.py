"""A model version's pair models as the backtest and the workers load them: AI1 (reversion
probability), AI2 (risk score) and AI3 (position scale), loaded from their native files after
checking each against ``checksums.json`` (no pickle), and scored on every bar of a pair.

On a bar, AI1 sees the pair features and the two event features as if an event opened there
(``event_direction`` = sign of z, ``event_abs_z0`` = |z|): the strategy only asks it where
|z| >= entry_z, which is where AI1's training events open.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import numpy as np
import pandas as pd
import yaml

from mlcore.config import TIMEFRAMES
from mlcore.errors import MissingInputError, MlcoreError
from mlcore.execution._artifacts import read_checked, read_checksums
from mlcore.execution._calibration import IsotonicCalibrator
from mlcore.execution._inputs import ModelInputs
from mlcore.execution._params import DECISION_RECORD, VersionParams, no_record, parse_params

if TYPE_CHECKING:
    import lightgbm as lgb
    import xgboost as xgb


def is_lightgbm(booster: object) -> TypeGuard[lgb.Booster]:
    """Whether ``booster`` is a LightGBM one (else XGBoost), without importing LightGBM: a
    LightGBM booster exists only once LightGBM is loaded."""
    lgb_module = sys.modules.get("lightgbm")
    return lgb_module is not None and isinstance(booster, lgb_module.Booster)


@dataclass(frozen=True)
class _Classifier:
    booster: lgb.Booster | xgb.Booster
    inputs: ModelInputs
    calibrator: IsotonicCalibrator

    def complete(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows whose every input is finite."""
        values = frame[list(self.inputs.columns)].to_numpy(dtype=np.float64)
        ok: np.ndarray = np.isfinite(values).all(axis=1)
        return ok

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        X, _ = self.inputs.transform(frame)
        if is_lightgbm(self.booster):
            raw = self.booster.predict(X, raw_score=True)
            if self.calibrator.response == "predict_proba":
                raw = 1.0 / (1.0 + np.exp(-np.asarray(raw)))
        else:
            margin = self.calibrator.response == "decision_function"
            # XGBoost 3 names the output with predict_type (it has no output_margin argument).
            booster = cast("xgb.Booster", self.booster)
            raw = booster.inplace_predict(X, predict_type="margin" if margin else "value")
        return self.calibrator.predict(np.asarray(raw, dtype=np.float64))


# LightGBM and XGBoost are imported when a model file is read, not with the package: each pulls
# scikit-learn and SciPy in at import (its sklearn wrapper), which a process importing
# mlcore.serving or mlcore.execution without loading a version does not need.


def _booster(name: str, data: bytes) -> lgb.Booster | xgb.Booster:
    return _lightgbm(name, data) if name.endswith(".lgbm.txt") else _xgboost(name, data)


def _lightgbm(name: str, data: bytes) -> lgb.Booster:
    import lightgbm as lgb

    try:
        return lgb.Booster(model_str=data.decode())
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: not a readable model ({str(exc)[:160]})") from None


def _xgboost(name: str, data: bytes) -> xgb.Booster:
    import xgboost as xgb

    try:
        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": 1})
        return booster
    except xgb.core.XGBoostError as exc:
        raise ValueError(f"{name}: not a readable model ({str(exc)[:160]})") from None


def _json_doc(name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{name}: not JSON ({exc})") from None


def _mapping(name: str, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError(f"{name}: expected a mapping, got {type(doc).__name__}")
    return doc


def _params(data: bytes) -> dict[str, Any]:
    try:
        params = _mapping("params.yaml", yaml.safe_load(data))
    except yaml.YAMLError as exc:
        raise ValueError(f"params.yaml: not YAML ({str(exc).splitlines()[0]})") from None
    timeframe = params.get("timeframe")
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"params.yaml: timeframe {timeframe!r} is not one of {sorted(TIMEFRAMES)}")
    seed = params.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"params.yaml: seed {seed!r} is not an integer")
    return params


@dataclass(frozen=True)
class PairModels:
    """AI1/AI2/AI3 of one model version, with what the backtest stamps on its outputs."""

    version: str
    folder: Path
    ai1: _Classifier
    ai2: _Classifier
    ai3: lgb.Booster
    metrics: dict[str, Any]
    run: dict[str, Any]
    params: dict[str, Any]
    index: dict[str, Any]
    feature_schema_hash: str
    #: the version's decision parameters (None: trained before versions carried them)
    decision: VersionParams | None = None

    def decision_params(self) -> VersionParams:
        """The version's decision parameters; ``ConfigError`` MODEL_PARAMS_MISSING (one line,
        naming the version: retrain it) for a version trained before they were recorded."""
        if self.decision is None:
            raise no_record(self.version)
        return self.decision

    @classmethod
    def load(
        cls, folder: Path, restore: Callable[[str], object] | None = None,
        sums: Mapping[str, str] | None = None,
    ) -> PairModels:  # fmt: skip
        """Load and check a model version folder; ``ValueError`` naming the file at fault.
        Files are checked against ``sums`` (the checksums the registry recorded) when given,
        else against the folder's own ``checksums.json``. With ``restore`` (the registry's),
        a missing or damaged file is first put back from the archived copy, verified, and the
        load tried once more."""
        try:
            return cls._load(folder, sums)
        except ValueError as exc:
            if restore is None:
                raise
            try:
                restore(folder.name)
            except Exception as failed:
                if isinstance(exc, MlcoreError):  # keep its code
                    raise type(exc)(exc.code, f"{exc.message} (not restored: {failed})") from None
                raise ValueError(f"{exc} (not restored: {failed})") from None
            return cls._load(folder, sums)

    @classmethod
    def _load(cls, folder: Path, recorded: Mapping[str, str] | None) -> PairModels:
        if not folder.is_dir():
            raise MissingInputError(
                "MODEL_VERSION_NOT_FOUND",
                f"{folder}: no such model version folder; train one (`mlcore train`) or name "
                "an existing version",
            )
        sums = dict(recorded) if recorded is not None else read_checksums(folder)

        def read(name: str) -> bytes:
            try:
                return read_checked(folder, name, sums)
            except FileNotFoundError:
                raise ValueError(f"{folder / name}: missing") from None

        pickles = sorted(p.name for p in folder.glob("*.pkl"))
        schema_bytes = read("feature_schema.json")
        schema = _json_doc("feature_schema.json", schema_bytes)
        models = {}
        for name in ("ai1", "ai2"):
            files = [f for f in (f"{name}.lgbm.txt", f"{name}.xgb.json") if (folder / f).exists()]
            if not files:
                extra = f" (pickles {pickles} are never loaded)" if pickles else ""
                raise ValueError(f"{folder}: no {name}.lgbm.txt or {name}.xgb.json{extra}")
            try:
                inputs = ModelInputs.from_schema(schema["models"][name])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"feature_schema.json: no usable {name} inputs ({exc})") from None
            cal = IsotonicCalibrator.from_dict(
                _json_doc(f"{name}_calibration.json", read(f"{name}_calibration.json"))
            )
            models[name] = _Classifier(_booster(files[0], read(files[0])), inputs, cal)
        ai3 = _lightgbm("ai3.lgbm.txt", read("ai3.lgbm.txt"))
        decision = None
        if DECISION_RECORD in sums or (folder / DECISION_RECORD).exists():
            decision = parse_params(folder.name, read(DECISION_RECORD))
        return cls(
            version=folder.name,
            folder=folder,
            ai1=models["ai1"],
            ai2=models["ai2"],
            ai3=ai3,
            metrics=_mapping("metrics.json", _json_doc("metrics.json", read("metrics.json"))),
            run=_mapping("run.json", _json_doc("run.json", read("run.json"))),
            params=_params(read("params.yaml")),
            index=_mapping(
                "dataset_index_filtered.json",
                _json_doc("dataset_index_filtered.json", read("dataset_index_filtered.json")),
            ),
            feature_schema_hash=hashlib.sha256(schema_bytes).hexdigest(),
            decision=decision,
        )

    def pairs(self) -> set[str]:
        """The pairs the version was trained on."""
        try:
            return set(self.index["rows_per_pair"]["ai1"])
        except (KeyError, TypeError):
            raise ValueError(
                f"model version {self.version}: dataset_index_filtered.json lists no pairs"
            ) from None

    def windows(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """(search start, test start): θ is searched on the models' calibration part (which no
        model was fitted or tuned on) and adoption judged from their test part on; the latest of
        AI1/AI2/AI3's dates is taken."""
        try:
            splits = [self.metrics[m]["split_ts"] for m in ("ai1", "ai2", "ai3")]
            starts = [pd.Timestamp(s["calibration_start"]) for s in splits]
            tests = [pd.Timestamp(s["test_start"]) for s in splits]
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"model version {self.version}: metrics.json has no split_ts (trained before "
                "the backtest existed); retrain it with `mlcore train`"
            ) from None
        start, test = max(starts), max(tests)
        if not start < test:
            raise ValueError(
                f"model version {self.version}: metrics.json split_ts gives an empty search "
                f"window ({start} .. {test})"
            )
        return start, test

    def score(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(return_prob, risk_score, position_scale) per bar of a pair's feature frame; a bar
        with a missing input gets NaN, which no gate passes."""
        needed = {c for m in (self.ai1, self.ai2) for c in m.inputs.columns}
        needed -= {"event_direction", "event_abs_z0"}
        missing = sorted(needed - set(features.columns) | ({"z"} - set(features.columns)))
        if missing:
            raise ValueError(
                f"model version {self.version} needs features {missing} that the pair's "
                "feature frame lacks (built with another feature configuration?)"
            )
        frame = features.copy()
        z = frame["z"].to_numpy(dtype=np.float64)
        frame["event_direction"] = np.sign(z)
        frame["event_abs_z0"] = np.abs(z)
        n = len(frame)
        prob, risk, scale = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        ok1, ok2 = self.ai1.complete(frame), self.ai2.complete(frame)
        if ok1.any():
            prob[ok1] = self.ai1.predict(frame[ok1])
            X, _ = self.ai1.inputs.transform(frame[ok1])
            scale[ok1] = np.clip(np.asarray(self.ai3.predict(X), dtype=np.float64), 0.0, 1.0)
        if ok2.any():
            risk[ok2] = self.ai2.predict(frame[ok2])
        return prob, risk, scale
