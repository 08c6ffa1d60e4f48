"""The synthetic market carries the truth it claims: beta, half-life, clustering, faults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.config import AppConfig
from mlcore.data import default_pairs, generate_market, generate_pair

START = pd.Timestamp("2022-01-01", tz="UTC")
END = pd.Timestamp("2024-12-31", tz="UTC")


@pytest.mark.parametrize("spec", default_pairs(), ids=lambda p: p.pair_id)
def test_beta_and_half_life_are_recoverable(cfg: AppConfig, spec) -> None:  # type: ignore[no-untyped-def]
    cal = cfg.universe.calendars[cfg.universe.instruments[spec.leg_a].calendar]
    a, b, (brk0, brk1) = generate_pair(spec, cal, "1h", START, END, seed=11)
    outside = ((a["ts"] < brk0) | (a["ts"] > brk1)).to_numpy()
    la, lb = np.log(a["close"].to_numpy()), np.log(b["close"].to_numpy())
    beta_hat, _alpha_hat = np.polyfit(lb[outside], la[outside], 1)
    assert beta_hat == pytest.approx(spec.beta, abs=0.03)
    pre = (a["ts"] < brk0).to_numpy()
    spread = la[pre] - spec.alpha - spec.beta * lb[pre]
    phi = np.polyfit(spread[:-1], spread[1:], 1)[0]
    half_life = -np.log(2) / np.log(phi)
    assert half_life == pytest.approx(spec.half_life_bars, rel=0.25)


def test_regime_break_loses_mean_reversion(cfg: AppConfig) -> None:
    spec = default_pairs()[0]
    cal = cfg.universe.calendars["fx"]
    a, b, (brk0, brk1) = generate_pair(spec, cal, "1h", START, END, seed=11)
    la, lb = np.log(a["close"].to_numpy()), np.log(b["close"].to_numpy())
    spread = la - spec.alpha - spec.beta * lb
    inside = ((a["ts"] >= brk0) & (a["ts"] <= brk1)).to_numpy()
    pre = (a["ts"] < brk0).to_numpy()
    assert np.std(spread[inside]) > 2 * np.std(spread[pre])


def test_volatility_clusters(cfg: AppConfig) -> None:
    spec = default_pairs()[2]
    _, b, _ = generate_pair(spec, cfg.universe.calendars["crypto"], "1h", START, END, seed=5)
    r = np.diff(np.log(b["close"].to_numpy()))
    sq = r**2 - np.mean(r**2)
    acf1 = float(np.dot(sq[:-1], sq[1:]) / np.dot(sq, sq))
    assert acf1 > 0.05
    assert (b["high"] >= b[["open", "close"]].max(axis=1)).all()
    assert (b["low"] <= b[["open", "close"]].min(axis=1)).all()


def test_same_seed_same_market(cfg: AppConfig) -> None:
    cals = {s: cfg.universe.calendars[i.calendar] for s, i in cfg.universe.instruments.items()}
    m1 = generate_market(cals, "1h", START, END, 3, quarantine=("XAG/USD", "2024-05", 5))
    m2 = generate_market(cals, "1h", START, END, 3, quarantine=("XAG/USD", "2024-05", 5))
    for sym in m1.bars:
        pd.testing.assert_frame_equal(m1.bars[sym], m2.bars[sym])
    assert m1.manifest() == m2.manifest()
    m3 = generate_market(cals, "1h", START, END, 4)
    assert not m1.bars["XAU/USD"]["close"].equals(m3.bars["XAU/USD"]["close"])


def test_faults_are_planted_where_recorded(cfg: AppConfig) -> None:
    cals = {s: cfg.universe.calendars[i.calendar] for s, i in cfg.universe.instruments.items()}
    m = generate_market(cals, "1h", START, END, 3, quarantine=("XAG/USD", "2024-05", 5))
    kinds = {f.kind for f in m.faults}
    assert kinds == {
        "bad_print",
        "real_jump",
        "duplicate",
        "conflict",
        "gap_filled",
        "gap_quarantine",
    }
    for f in m.faults:
        ts = pd.DatetimeIndex(m.bars[f.symbol]["ts"])
        t = pd.Timestamp(f.ts)
        if f.kind.startswith("gap"):
            assert t not in ts
        elif f.kind in ("duplicate", "conflict"):
            assert (ts == t).sum() == 2
        else:
            assert (ts == t).sum() == 1
