"""From the catalog to labelled model inputs: a pair's cached features, labelled per segment of
unbroken history (no label horizon spans an excluded month), and the AI1 event rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES, AppConfig, LabelPolicy, PairSpec
from mlcore.data import Catalog
from mlcore.features import (
    FeatureBuildReport,
    build_pair_features,
    build_symbol_features,
    load_pair_features,
    load_symbol_features,
)
from mlcore.labels import ai1_events, ai2_labels, ai3_targets, direction_labels


@dataclass
class LabelledPair:
    """One pair's features (``ts``, ``segment``, feature columns) and every label, bar-aligned
    (``risk``, ``direction``) or per AI1 event (``events`` with ``ai3`` targets)."""

    pair_id: str
    features: pd.DataFrame
    events: pd.DataFrame
    risk: np.ndarray
    risk_t1: np.ndarray
    direction: np.ndarray
    build: FeatureBuildReport


def _label_segment(
    lab: LabelPolicy, seg: pd.DataFrame, close_a: np.ndarray, offset: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    ts = pd.DatetimeIndex(seg["ts"]).as_unit("ns").asi8
    # The spec's speed |dz|EMA: the size of the smoothed velocity of z.
    speed = np.abs(seg["dz_ema"].to_numpy())
    z = seg["z"].to_numpy()
    events = ai1_events(ts, z, speed, lab.ai1)
    events["ai3"] = ai3_targets(events, z, lab.ai1)
    risk, risk_t1 = ai2_labels(
        seg["rho_var"].to_numpy(), seg["atr_ratio"].to_numpy(), speed,
        seg["dd_recent"].to_numpy(), lab.ai2,
    )  # fmt: skip
    direction, _ = direction_labels(close_a, lab.direction)
    # Bar indices become row numbers of the whole pair frame.
    for col in ("t0", "t1"):
        events[col] = np.where(events[col] >= 0, events[col] + offset, -1)
    return events, risk, np.where(risk_t1 >= 0, risk_t1 + offset, -1), direction


def label_pair(cfg: AppConfig, cat: Catalog, pair: PairSpec, timeframe: str) -> LabelledPair:
    """Build (or reuse) the pair's cached features and label them, segment by segment."""
    build = build_pair_features(cfg, cat, pair, timeframe)
    feats = load_pair_features(cfg, pair.pair_id, timeframe)
    close = (
        cat.load_bars(timeframe, pair.leg_a).set_index("ts")["close"].reindex(feats["ts"])
    ).to_numpy()
    lab = cfg.core.labels_at(timeframe)
    parts = [
        _label_segment(lab, seg, close[seg.index.to_numpy()], int(seg.index[0]))
        for _, seg in feats.groupby("segment", sort=True)
    ]
    return LabelledPair(
        pair_id=pair.pair_id,
        features=feats,
        events=pd.concat([p[0] for p in parts], ignore_index=True),
        risk=np.concatenate([p[1] for p in parts]),
        risk_t1=np.concatenate([p[2] for p in parts]),
        direction=np.concatenate([p[3] for p in parts]),
        build=build,
    )


def ai1_rows(pair: LabelledPair, columns: list[str]) -> pd.DataFrame:
    """One row per labelled AI1 event: ``pair_id``, ``t0_ts``, ``t1_ts``, ``label``, ``ai3`` and
    the model columns at the bar the event opened (pair features, ``event_direction``,
    ``event_abs_z0``)."""
    ev = pair.events[pair.events["label"] >= 0]
    at = pair.features.iloc[ev["t0"].to_numpy()].reset_index(drop=True)
    at["event_direction"] = ev["direction"].to_numpy().astype(np.float64)
    at["event_abs_z0"] = np.abs(ev["z0"].to_numpy())
    missing = [c for c in columns if c not in at]
    if missing:
        raise ValueError(
            f"AI1 model columns {missing} are neither pair features nor event features"
        )
    rows = at[columns].copy()
    rows.insert(0, "ai3", ev["ai3"].to_numpy())
    rows.insert(0, "label", ev["label"].to_numpy().astype(np.int64))
    rows.insert(0, "t1_ts", ev["t1_ts"].to_numpy())
    rows.insert(0, "t0_ts", ev["t0_ts"].to_numpy())
    rows.insert(0, "pair_id", pair.pair_id)
    return rows


def bar_numbers(ts_ns: np.ndarray, timeframe: str) -> np.ndarray:
    """Timestamps as bar numbers on the timeframe's clock (shared by every pair), so purging
    and embargo count bars across pairs."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {sorted(TIMEFRAMES)}")
    out: np.ndarray = np.asarray(ts_ns, dtype=np.int64) // (TIMEFRAMES[timeframe] * 1_000_000_000)
    return out


def ai2_rows(pair: LabelledPair, columns: list[str]) -> pd.DataFrame:
    """One row per bar with a known AI2 label: ``pair_id``, ``t0_ts`` (the bar), ``t1_ts`` (the
    end of its forward risk window), ``label`` and the model columns at that bar."""
    known = np.flatnonzero(pair.risk >= 0)
    at = pair.features.iloc[known].reset_index(drop=True)
    missing = [c for c in columns if c not in at]
    if missing:
        raise ValueError(f"AI2 model columns {missing} are not pair features")
    ts = pd.DatetimeIndex(pair.features["ts"]).as_unit("ns").asi8
    rows = at[columns].copy()
    rows.insert(0, "label", pair.risk[known].astype(np.int64))
    rows.insert(0, "t1_ts", ts[pair.risk_t1[known]])
    rows.insert(0, "t0_ts", ts[known])
    rows.insert(0, "pair_id", pair.pair_id)
    return rows


def direction_rows(cfg: AppConfig, cat: Catalog, symbol: str, timeframe: str) -> pd.DataFrame:
    """One row per bar of ``symbol`` with a known 3-class direction label: ``symbol``,
    ``t0_ts`` (the bar), ``t1_ts`` (the bar the forward return ends), ``label`` (0 SELL,
    1 HOLD, 2 BUY) and every cached single-instrument feature at that bar. Labels are computed
    per segment of unbroken history, so no return spans an excluded month."""
    build_symbol_features(cfg, cat, symbol, timeframe)
    feats = load_symbol_features(cfg, symbol, timeframe)
    close = (
        cat.load_bars(timeframe, symbol).set_index("ts")["close"].reindex(feats["ts"])
    ).to_numpy()
    ts = pd.DatetimeIndex(feats["ts"]).as_unit("ns").asi8
    labels = np.full(len(feats), -1, dtype=np.int64)
    ends = np.full(len(feats), -1, dtype=np.int64)
    for _, seg in feats.groupby("segment", sort=True):
        at = seg.index.to_numpy()
        lab, t1 = direction_labels(close[at], cfg.core.labels_at(timeframe).direction)
        labels[at] = lab
        ends[at] = np.where(t1 >= 0, at[0] + t1, -1)
    known = np.flatnonzero(labels >= 0)
    rows = feats.iloc[known].drop(columns=["ts", "segment"]).reset_index(drop=True)
    rows.insert(0, "label", labels[known])
    rows.insert(0, "t1_ts", ts[ends[known]])
    rows.insert(0, "t0_ts", ts[known])
    rows.insert(0, "symbol", symbol)
    return rows
