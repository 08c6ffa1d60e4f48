"""A model version's pair models as the backtest uses them: AI1 (reversion probability), AI2
(risk score) and AI3 (position scale), loaded from their native files after checking each
against ``checksums.json`` (no pickle), and scored on every bar of a pair.

On a bar, AI1 sees the pair features and the two event features as if an event opened there
(``event_direction`` = sign of z, ``event_abs_z0`` = |z|): the strategy only asks it where
|z| >= entry_z, which is where AI1's training events open.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb
import yaml

from mlcore.models import read_checked, read_checksums
from mlcore.training import IsotonicCalibrator, ModelInputs


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
        if isinstance(self.booster, lgb.Booster):
            raw = self.booster.predict(X, raw_score=True)
            if self.calibrator.response == "predict_proba":
                raw = 1.0 / (1.0 + np.exp(-np.asarray(raw)))
        else:
            margin = self.calibrator.response == "decision_function"
            raw = self.booster.inplace_predict(X, output_margin=margin)
        return self.calibrator.predict(np.asarray(raw, dtype=np.float64))


def _booster(name: str, data: bytes) -> lgb.Booster | xgb.Booster:
    try:
        if name.endswith(".lgbm.txt"):
            return lgb.Booster(model_str=data.decode())
        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": 1})
        return booster
    except (lgb.basic.LightGBMError, xgb.core.XGBoostError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: not a readable model ({str(exc)[:160]})") from None


def _json_doc(name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{name}: not JSON ({exc})") from None


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

    @classmethod
    def load(cls, folder: Path) -> PairModels:
        """Load and check a model version folder; ``ValueError`` naming the file at fault."""
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such model version folder")
        sums = read_checksums(folder)

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
        ai3 = _booster("ai3.lgbm.txt", read("ai3.lgbm.txt"))
        if not isinstance(ai3, lgb.Booster):  # pragma: no cover - a .lgbm.txt name is LightGBM
            raise ValueError("ai3.lgbm.txt: not a LightGBM model")
        return cls(
            version=folder.name,
            folder=folder,
            ai1=models["ai1"],
            ai2=models["ai2"],
            ai3=ai3,
            metrics=_json_doc("metrics.json", read("metrics.json")),
            run=_json_doc("run.json", read("run.json")),
            params=yaml.safe_load(read("params.yaml")),
            index=_json_doc("dataset_index_filtered.json", read("dataset_index_filtered.json")),
            feature_schema_hash=hashlib.sha256(schema_bytes).hexdigest(),
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
        """(search start, test start): θ is searched on AI1/AI2's calibration part and adoption
        judged from their test part on; the later of the two models' dates is taken."""
        try:
            splits = [self.metrics[m]["split_ts"] for m in ("ai1", "ai2")]
            starts = [pd.Timestamp(s["calibration_start"]) for s in splits]
            tests = [pd.Timestamp(s["test_start"]) for s in splits]
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"model version {self.version}: metrics.json has no split_ts (trained before "
                "the backtest existed); retrain it with `mlcore train`"
            ) from None
        return max(starts), max(tests)

    def score(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(return_prob, risk_score, position_scale) per bar of a pair's feature frame; bars
        with missing inputs get (0, 1, 0): no entry."""
        frame = features.copy()
        z = frame["z"].to_numpy(dtype=np.float64)
        frame["event_direction"] = np.sign(z)
        frame["event_abs_z0"] = np.abs(z)
        n = len(frame)
        prob, risk, scale = np.zeros(n), np.ones(n), np.zeros(n)
        ok1, ok2 = self.ai1.complete(frame), self.ai2.complete(frame)
        if ok1.any():
            prob[ok1] = self.ai1.predict(frame[ok1])
            X, _ = self.ai1.inputs.transform(frame[ok1])
            scale[ok1] = np.clip(np.asarray(self.ai3.predict(X), dtype=np.float64), 0.0, 1.0)
        if ok2.any():
            risk[ok2] = self.ai2.predict(frame[ok2])
        return prob, risk, scale
