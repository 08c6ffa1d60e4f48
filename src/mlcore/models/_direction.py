"""The 3-class direction ensemble (spec 003) as stored and served: LightGBM + XGBoost + random
forest soft vote over SELL/HOLD/BUY, at three feature levels with graceful fallback.

A model version holds, per level ``k``, ``ensemble_level{k}.json`` (columns, weights, classes)
and the three native models ``ensemble_level{k}.lightgbm.txt``, ``.xgboost.json`` and
``.random_forest.json``; ``checksums.json`` of the version lists their SHA256. The older 003
names (``production_ensemble_full`` = level 1, ``production_ensemble`` = level 2,
``production_ensemble_57`` = level 3) are read when the new ones are absent. A ``.pkl`` file is
never loaded.

:class:`DirectionModel` serves each row from the best level it can: level 1 (with the external
features), else 2, else 3, else a flat HOLD model. A level is skipped when its files are
missing, fail their checksum or do not parse, or when the row lacks one of its features (absent
or not finite). Every fallback is logged and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import lightgbm as lgb
import numpy as np
import pandas as pd
import structlog
import xgboost as xgb

from mlcore.execution import read_checked, read_checksums
from mlcore.models._forest import ForestModel

CLASS_NAMES: Final = ("SELL", "HOLD", "BUY")
HOLD_PROBA: Final = (0.0, 1.0, 0.0)
LEVELS: Final = (1, 2, 3)
COMPONENTS: Final = ("lightgbm", "xgboost", "random_forest")
_SUFFIX: Final = {"lightgbm": "lightgbm.txt", "xgboost": "xgboost.json",
                  "random_forest": "random_forest.json"}  # fmt: skip
ALIASES: Final = {1: "production_ensemble_full", 2: "production_ensemble",
                  3: "production_ensemble_57"}  # fmt: skip
HOLD_LEVEL: Final = 0  # the level number reported for rows served by the flat HOLD model

_log = structlog.get_logger("mlcore.models.direction")


def level_prefix(level: int) -> str:
    """File-name prefix of a level's ensemble: ``ensemble_level{level}``."""
    return f"ensemble_level{level}"


def level_file_names(level: int, prefix: str | None = None) -> dict[str, str]:
    """The files of one level: ``meta`` and one per component."""
    p = prefix or level_prefix(level)
    return {"meta": f"{p}.json"} | {c: f"{p}.{_SUFFIX[c]}" for c in COMPONENTS}


def unit_rows(proba: object) -> np.ndarray:
    """``proba`` as float64 with each row divided by its sum (XGBoost computes in float32, so
    its rows sum to 1 only within ~1e-7)."""
    arr = np.asarray(proba, dtype=np.float64)
    out: np.ndarray = arr / arr.sum(axis=1, keepdims=True)
    return out


def soft_vote(probas: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the components' class probabilities (weights normalised)."""
    total = sum(weights[c] for c in COMPONENTS)
    out = np.zeros_like(probas[COMPONENTS[0]])
    for c in COMPONENTS:
        out += (weights[c] / total) * probas[c]
    return unit_rows(out)


@dataclass(frozen=True)
class DirectionEnsemble:
    """One level's ensemble read from its native files."""

    level: int
    columns: tuple[str, ...]
    weights: dict[str, float]
    lightgbm: lgb.Booster
    xgboost: xgb.Booster
    random_forest: ForestModel

    def component_proba(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Each component's SELL/HOLD/BUY probabilities for the rows of ``X``."""
        # One thread each: LightGBM's and XGBoost's OpenMP pools, called in turn, would spin
        # against each other (measured: one row 8.6 ms instead of 0.76 ms on 2 cores).
        return {
            "lightgbm": unit_rows(self.lightgbm.predict(X, num_threads=1)),
            "xgboost": unit_rows(self.xgboost.inplace_predict(X)),
            "random_forest": unit_rows(self.random_forest.predict_proba(X)),
        }

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Soft-vote probabilities (n x 3: SELL, HOLD, BUY); ``X`` in :attr:`columns` order."""
        arr = np.ascontiguousarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self.columns):
            raise ValueError(
                f"level {self.level} expects n x {len(self.columns)} features, got {arr.shape}"
            )
        return soft_vote(self.component_proba(arr), self.weights)


def _find_prefix(folder: Path, level: int) -> str:
    """The level's file prefix present in ``folder`` (new name first, then the 003 alias)."""
    for prefix in (level_prefix(level), ALIASES[level]):
        if (folder / f"{prefix}.json").exists():
            return prefix
    names = (level_prefix(level), ALIASES[level])
    pickles = [f"{p}.pkl" for p in names if (folder / f"{p}.pkl").exists()]
    if pickles:
        raise ValueError(f"only {pickles} found: pickle files are never loaded")
    raise ValueError(f"{level_prefix(level)}.json (or {ALIASES[level]}.json) not found")


def load_level(folder: Path, level: int, sums: dict[str, str]) -> DirectionEnsemble:
    """One level's ensemble, checked against ``sums``; ``ValueError`` saying what is wrong."""
    prefix = _find_prefix(folder, level)
    names = level_file_names(level, prefix)
    try:
        raw = {k: read_checked(folder, n, sums) for k, n in names.items()}
    except FileNotFoundError as exc:
        raise ValueError(f"{Path(str(exc.filename)).name}: missing") from None
    try:
        meta = json.loads(raw["meta"])
        columns = tuple(str(c) for c in meta["columns"])
        weights = {c: float(meta["weights"][c]) for c in COMPONENTS}
        if meta.get("level") != level or meta.get("classes") != list(CLASS_NAMES):
            raise ValueError(
                f"level {meta.get('level')!r} or classes {meta.get('classes')!r} do not match"
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{names['meta']}: malformed ({exc})") from None
    try:
        booster = lgb.Booster(model_str=raw["lightgbm"].decode())
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
        raise ValueError(f"{names['lightgbm']}: not a LightGBM model ({exc})") from None
    xboost = xgb.Booster()
    try:
        xboost.load_model(bytearray(raw["xgboost"]))
        xboost.set_param({"nthread": 1})
    except xgb.core.XGBoostError as exc:
        raise ValueError(f"{names['xgboost']}: not an XGBoost model ({str(exc)[:120]})") from None
    forest = ForestModel.from_json(raw["random_forest"], names["random_forest"])
    widths = {"lightgbm": booster.num_feature(), "xgboost": xboost.num_features(),
              "random_forest": forest.n_features}  # fmt: skip
    wrong = {c: w for c, w in widths.items() if w != len(columns)}
    if wrong:
        raise ValueError(f"{names['meta']}: {len(columns)} columns but models expect {wrong}")
    return DirectionEnsemble(level, columns, weights, booster, xboost, forest)


@dataclass
class DirectionPrediction:
    """Per row: SELL/HOLD/BUY probabilities, the class with the highest, and the level used
    (1-3, or 0 for the flat HOLD model)."""

    proba: np.ndarray
    label: np.ndarray
    level: np.ndarray


@dataclass
class DirectionModel:
    """The levels that loaded and the fallback counters (see the module docstring)."""

    levels: dict[int, DirectionEnsemble]
    unavailable: dict[int, str]
    fallbacks: Counter[str] = field(default_factory=Counter)
    served: Counter[int] = field(default_factory=Counter)
    _last_level: int | None = None

    @classmethod
    def load(cls, folder: Path) -> DirectionModel:
        """Every level that loads and checks out; the others are logged and recorded."""
        levels: dict[int, DirectionEnsemble] = {}
        unavailable: dict[int, str] = {}
        try:
            sums = read_checksums(folder)
        except ValueError as exc:
            unavailable = dict.fromkeys(LEVELS, str(exc))
        else:
            for level in LEVELS:
                try:
                    levels[level] = load_level(folder, level, sums)
                except (ValueError, OSError) as exc:
                    unavailable[level] = str(exc)
        for level, reason in unavailable.items():
            _log.warning(
                "direction_level_unavailable", level=level, folder=str(folder), reason=reason
            )
        return cls(levels, unavailable)

    def predict(self, features: pd.DataFrame) -> DirectionPrediction:
        """Serve each row of ``features`` (columns by name) from its best usable level."""
        n = len(features)
        proba = np.tile(np.asarray(HOLD_PROBA), (n, 1))
        level_of = np.full(n, HOLD_LEVEL, dtype=np.int64)
        todo = np.ones(n, dtype=bool)
        for level in LEVELS:
            ens = self.levels.get(level)
            if ens is None:
                self.fallbacks[f"level{level}: {self.unavailable[level]}"] += int(todo.sum())
                continue
            absent = [c for c in ens.columns if c not in features.columns]
            if absent:
                self.fallbacks[f"level{level}: features absent {absent[:3]}"] += int(todo.sum())
                continue
            X = features[list(ens.columns)].to_numpy(dtype=np.float64)
            ok = todo & np.isfinite(X).all(axis=1)
            self.fallbacks[f"level{level}: features not finite"] += int((todo & ~ok).sum())
            if ok.any():
                proba[ok] = ens.predict_proba(X[ok])
                level_of[ok] = level
                todo &= ~ok
        self.fallbacks = +self.fallbacks  # drop zero counts
        for level in np.unique(level_of):
            self.served[int(level)] += int((level_of == level).sum())
        self._log_changes(level_of)
        return DirectionPrediction(proba, np.argmax(proba, axis=1), level_of)

    def _log_changes(self, level_of: np.ndarray) -> None:
        """One log line each time the serving level changes (not one per row)."""
        if not len(level_of):
            return
        for value in level_of[np.r_[True, level_of[1:] != level_of[:-1]]]:
            level = int(value)
            if level == self._last_level:
                continue
            if level != LEVELS[0]:
                _log.warning(
                    "direction_level_fallback", level=level, fallbacks=dict(self.fallbacks)
                )
            elif self._last_level is not None:
                _log.info("direction_level_restored", level=level)
            self._last_level = level
