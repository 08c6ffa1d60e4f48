"""Feature cache: pair features per month under ``{features_root}/{timeframe}/{PAIR}/{YYYY-MM}/``.

Files per month, named by the feature hash (the configuration of the features):
``{feature_hash}.parquet`` (the features), ``{feature_hash}.state.npz`` (the streaming state at
the month's end) and ``{feature_hash}.meta.json`` (written last: the month is complete).

A pair feature depends on all earlier bars, so each month carries a chain key,
sha256(previous month's key, feature hash, hash of the month's aligned input bars): a month is
reused only when its key matches, i.e. when neither its bars nor any earlier bar changed.
A missing or stale month is computed by the streaming engine from the previous month's saved
state, so a cached history equals a full recomputation bar for bar.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config import AppConfig, PairSpec
from mlcore.data import Catalog, write_atomic
from mlcore.data._store import json_bytes, month_groups, symbol_dirname, to_parquet_bytes
from mlcore.errors import MissingDataError
from mlcore.features import _kernels as _kernels_module
from mlcore.features._engine import PairFeatureEngine, SingleFeatureEngine, align_legs
from mlcore.features._kernels import PAIR_FEATURES, SINGLE_FEATURES

_LEG_COLS = ["ts", "open", "high", "low", "close", "volume", "quality_flag"]
_FLAGGED = ("filled", "outlier", "conflict")
_INPUT_COLS = ["high_a", "low_a", "close_a", "high_b", "low_b", "close_b"]
CACHE_VERSION = 1


@dataclass
class FeatureBuildReport:
    """What ``features build`` computed and what it took from the cache."""

    pair_id: str
    timeframe: str
    feature_hash: str
    aligned_bars: int
    dropped_bars: dict[str, int]
    warm_up_bars: int
    flagged_input_bars: dict[str, int]
    months_computed: list[str] = field(default_factory=list)
    months_cached: list[str] = field(default_factory=list)
    report_path: str = ""


# The compiled formulas are part of what defines a feature: a change to them invalidates the cache.
_KERNELS_SHA = hashlib.sha256(Path(_kernels_module.__file__).read_bytes()).hexdigest()


def _hash_spec(kind: str, names: tuple[str, ...], params: dict[str, Any]) -> str:
    spec = {
        "cache_version": CACHE_VERSION,
        "kernels_sha256": _KERNELS_SHA,
        "kind": kind,
        "features": [{"name": f, "dtype": "float64"} for f in names],
        "params": params,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def pair_feature_hash(cfg: AppConfig) -> str:
    """Hash of everything that defines the pair features (names, order, dtypes, windows)."""
    return _hash_spec("pair", PAIR_FEATURES, cfg.features.pair.model_dump())


def single_feature_hash() -> str:
    """Hash of everything that defines the single-instrument features."""
    return _hash_spec("single", SINGLE_FEATURES, {})


@dataclass(frozen=True)
class _Kind:
    """How one family of features is computed month by month from a saved state."""

    fhash: str
    names: tuple[str, ...]
    input_cols: tuple[str, ...]
    new_engine: Callable[[], Any]
    load_engine: Callable[[bytes], Any]
    compute: Callable[[Any, pd.DataFrame], np.ndarray]


def _pair_kind(cfg: AppConfig) -> _Kind:
    w = cfg.features.pair
    return _Kind(
        pair_feature_hash(cfg),
        PAIR_FEATURES,
        tuple(_INPUT_COLS),
        lambda: PairFeatureEngine(w),
        lambda data: PairFeatureEngine.load(w, data),
        lambda engine, rows: engine.warm(rows[_INPUT_COLS].to_numpy()),
    )


def _single_kind() -> _Kind:
    cols = ["open", "high", "low", "close", "volume"]

    def compute(engine: Any, rows: pd.DataFrame) -> np.ndarray:
        ts = pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8
        out: np.ndarray = engine.warm(ts, rows[cols].to_numpy(dtype=np.float64))
        return out

    return _Kind(
        single_feature_hash(),
        SINGLE_FEATURES,
        tuple(cols),
        SingleFeatureEngine,
        SingleFeatureEngine.load,
        compute,
    )


def _month_dir(cfg: AppConfig, timeframe: str, pair_id: str, month: str) -> Path:
    return cfg.paths.features / timeframe / pair_id / month


def _read_meta(folder: Path, fhash: str) -> dict[str, Any] | None:
    path = folder / f"{fhash}.meta.json"
    if not path.exists():
        return None
    try:
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None  # unreadable: treated as missing and recomputed
    return meta


def _aligned(cat: Catalog, pair: PairSpec, timeframe: str) -> tuple[pd.DataFrame, dict[str, int]]:
    legs = []
    for sym in (pair.leg_a, pair.leg_b):
        bars = cat.load_bars(timeframe, sym)
        if bars.empty:
            raise MissingDataError(
                "DATA_PAIR_NO_BARS",
                f"pair {pair.pair_id}: no included bars for {sym} {timeframe} in the catalog; "
                f"ingest {timeframe} bars for {sym} first or remove {pair.pair_id} from "
                "universe.yaml",
                details={"pair_id": pair.pair_id, "symbol": sym, "timeframe": timeframe},
            )
        legs.append(bars[_LEG_COLS])
    joined, dropped = align_legs(legs[0], legs[1])
    flags = legs[0][["ts", "quality_flag"]].merge(
        legs[1][["ts", "quality_flag"]], on="ts", suffixes=("_a", "_b")
    )
    joined = joined.merge(flags, on="ts", how="left")
    return joined, dropped


def _chain_keys(
    aligned: pd.DataFrame, months: dict[str, np.ndarray], fhash: str, cols: list[str]
) -> dict[str, str]:
    keys: dict[str, str] = {}
    prev = fhash
    ts = pd.DatetimeIndex(aligned["ts"]).as_unit("ns").asi8
    values = aligned[cols].to_numpy(dtype=np.float64)
    for month in sorted(months):
        idx = months[month]
        h = hashlib.sha256(prev.encode())
        h.update(np.ascontiguousarray(ts[idx], dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(values[idx], dtype="<f8").tobytes())
        prev = keys[month] = h.hexdigest()
    return keys


def segment_starts(months: list[str]) -> set[str]:
    """Months that start a new segment: the first, and any after a missing month.

    A month that left the catalog (quarantined, excluded) breaks the history: features restart
    their warm-up after it, and labels must not look across it.
    """
    starts: set[str] = set()
    prev: pd.Period | None = None
    for month in sorted(months):
        cur = pd.Period(month, freq="M")
        if prev is None or cur != prev + 1:
            starts.add(month)
        prev = cur
    return starts


def _cached(folder: Path, fhash: str, chain: str) -> dict[str, Any] | None:
    meta = _read_meta(folder, fhash)
    files_ok = all((folder / f"{fhash}{ext}").is_file() for ext in (".parquet", ".state.npz"))
    if meta is not None and meta.get("chain_key") == chain and files_ok:
        return meta
    return None


def _build_months(
    cfg: AppConfig, timeframe: str, key: str, inputs: pd.DataFrame, kind: _Kind,
    report: FeatureBuildReport, *, force: bool = False,
) -> None:  # fmt: skip
    months = month_groups(inputs["ts"])
    keys = _chain_keys(inputs, months, kind.fhash, list(kind.input_cols))
    starts = segment_starts(list(months))
    engine: Any = None
    prev_dir: Path | None = None
    for month in sorted(months):
        folder = _month_dir(cfg, timeframe, key, month)
        meta = None if force else _cached(folder, kind.fhash, keys[month])
        if meta is not None:
            report.months_cached.append(month)
            report.warm_up_bars += int(meta["warm_up_bars"])
            engine, prev_dir = None, folder  # state loaded only if a later month is computed
            continue
        if month in starts:
            engine = kind.new_engine()
        elif engine is None:
            try:
                engine = kind.load_engine((prev_dir / f"{kind.fhash}.state.npz").read_bytes())  # type: ignore[operator]
            except (OSError, ValueError, KeyError):
                # A damaged saved state: rebuild this history from the start.
                report.months_cached.clear()
                report.months_computed.clear()
                report.warm_up_bars = 0
                _build_months(cfg, timeframe, key, inputs, kind, report, force=True)
                return
        rows = inputs.iloc[months[month]]
        values = kind.compute(engine, rows)
        frame = pd.DataFrame(values, columns=list(kind.names))
        frame.insert(0, "ts", rows["ts"].to_numpy())
        warm = int(np.isnan(values).any(axis=1).sum())
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{kind.fhash}.parquet", to_parquet_bytes(frame))
        write_atomic(folder / f"{kind.fhash}.state.npz", engine.save())
        meta = {
            "key": key,
            "timeframe": timeframe,
            "month": month,
            "feature_hash": kind.fhash,
            "chain_key": keys[month],
            "segment_start": month in starts,
            "bars": len(rows),
            "warm_up_bars": warm,
            "features": list(kind.names),
        }
        write_atomic(folder / f"{kind.fhash}.meta.json", json_bytes(meta))
        report.months_computed.append(month)
        report.warm_up_bars += warm
        prev_dir = folder
    _write_index(cfg, timeframe, key, kind.fhash, keys)


def _write_index(
    cfg: AppConfig, timeframe: str, key: str, fhash: str, keys: dict[str, str]
) -> None:
    # The months of the latest build, in order; loading reads only these (a month that left the
    # catalog keeps its old files on disk but is no longer part of the history).
    path = cfg.paths.features / timeframe / key / f"{fhash}.index.json"
    write_atomic(path, json_bytes({"feature_hash": fhash, "months": keys}))


def _finish(cfg: AppConfig, timeframe: str, key: str, report: FeatureBuildReport) -> None:
    path = cfg.paths.features / timeframe / key / "preprocess_report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json_bytes(asdict(report) | {"report_path": str(path)}))
    report.report_path = str(path)


def build_pair_features(
    cfg: AppConfig, cat: Catalog, pair: PairSpec, timeframe: str
) -> FeatureBuildReport:
    """Compute the pair's features for every month not already cached with the same chain key."""
    kind = _pair_kind(cfg)
    aligned, dropped = _aligned(cat, pair, timeframe)
    report = FeatureBuildReport(pair.pair_id, timeframe, kind.fhash, len(aligned), dropped, 0, {})
    _build_months(cfg, timeframe, pair.pair_id, aligned, kind, report)
    for flag in _FLAGGED:
        report.flagged_input_bars[flag] = int(
            ((aligned["quality_flag_a"] == flag) | (aligned["quality_flag_b"] == flag)).sum()
        )
    _finish(cfg, timeframe, pair.pair_id, report)
    return report


def build_symbol_features(
    cfg: AppConfig, cat: Catalog, symbol: str, timeframe: str
) -> FeatureBuildReport:
    """Compute one symbol's single-instrument features for every month not already cached."""
    kind = _single_kind()
    bars = cat.load_bars(timeframe, symbol)
    if bars.empty:
        raise MissingDataError(
            "DATA_SYMBOL_NO_BARS",
            f"no included bars for {symbol} {timeframe} in the catalog; ingest {timeframe} bars "
            f"for {symbol} first",
            details={"symbol": symbol, "timeframe": timeframe},
        )
    key = symbol_dirname(symbol)
    report = FeatureBuildReport(key, timeframe, kind.fhash, len(bars), {}, 0, {})
    _build_months(cfg, timeframe, key, bars, kind, report)
    for flag in _FLAGGED:
        report.flagged_input_bars[flag] = int((bars["quality_flag"] == flag).sum())
    _finish(cfg, timeframe, key, report)
    return report


def load_symbol_features(cfg: AppConfig, symbol: str, timeframe: str) -> pd.DataFrame:
    """The cached single-instrument features of a symbol, oldest first."""
    return _load(cfg, symbol_dirname(symbol), timeframe, single_feature_hash())


def load_pair_features(cfg: AppConfig, pair_id: str, timeframe: str) -> pd.DataFrame:
    """The cached features of a pair from the latest build, oldest first.

    A ``segment`` column numbers the unbroken stretches of history (a month missing from the
    catalog starts a new one, with its own warm-up); labels must not span segments.
    """
    return _load(cfg, pair_id, timeframe, pair_feature_hash(cfg))


def _load(cfg: AppConfig, key: str, timeframe: str, fhash: str) -> pd.DataFrame:
    root = cfg.paths.features / timeframe / key
    index_path = root / f"{fhash}.index.json"
    if not index_path.exists():
        raise MissingDataError(
            "FEATURES_CACHE_MISSING",
            f"no cached {timeframe} features for {key}; run `mlcore features build --timeframe "
            f"{timeframe}` first",
            details={"key": key, "timeframe": timeframe},
        )
    months: dict[str, str] = json.loads(index_path.read_text(encoding="utf-8"))["months"]
    frames = []
    starts = segment_starts(list(months))
    segment = -1
    for month, chain in sorted(months.items()):
        meta = _read_meta(root / month, fhash)
        if meta is None or meta.get("chain_key") != chain:
            raise MissingDataError(
                "FEATURES_CACHE_MISSING",
                f"feature cache for {key} {timeframe} {month} is missing or stale; "
                f"run `mlcore features build --timeframe {timeframe}`",
                details={"key": key, "timeframe": timeframe, "month": month},
            )
        frame = pd.read_parquet(io.BytesIO((root / month / f"{fhash}.parquet").read_bytes()))
        segment += month in starts
        frame["segment"] = segment
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
