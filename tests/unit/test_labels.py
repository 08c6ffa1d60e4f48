"""Labels: AI1 reversion events, AI2 forward risk, AI3 position-scale targets, direction classes.

Hand-built paths pin each rule of spec 002 (ラベリング仕様) and 003; hypothesis checks the AI1
invariants training relies on (t1 inside the horizon, t1 at the first reversion) against a
plain-loop oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.config import AI1LabelPolicy, AI2LabelPolicy, DirectionLabelPolicy
from mlcore.labels import (
    BUY,
    EVENT_COLUMNS,
    HOLD,
    SELL,
    ai1_events,
    ai2_class_weights,
    ai2_labels,
    ai3_targets,
    direction_labels,
)

NAN = math.nan
MINUTE_NS = 60 * 1_000_000_000
AI1 = AI1LabelPolicy(entry_z=2.0, exit_z=0.5, horizon_bars=3, max_dz_ema=0.12)
AI2 = AI2LabelPolicy(
    rho_var_max=0.025,
    atr_ratio_max=1.8,
    dz_ema_max=0.12,
    dd_recent_max=0.07,
    horizon_bars=2,
    class_weight_cap=5.0,
)
DIRECTION = DirectionLabelPolicy(threshold=0.005, horizon_bars=1)


def _ts(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * MINUTE_NS


def _events(
    z: list[float], dz: list[float] | None = None, policy: AI1LabelPolicy = AI1
) -> pd.DataFrame:
    return ai1_events(_ts(len(z)), np.array(z), np.zeros(len(z)) if dz is None else dz, policy)


def _rows(ev: pd.DataFrame) -> list[tuple[int, int, int, int]]:
    """(t0, t1, direction, label) per event."""
    cols = ev[["t0", "t1", "direction", "label"]].to_numpy()
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in cols]


# --- AI1 -----------------------------------------------------------------------------------


def test_ai1_reversion_on_last_allowed_bar_is_1() -> None:
    ev = _events([0.0, 2.5, 1.5, 1.0, 0.5, 0.0])
    assert _rows(ev) == [(1, 4, 1, 1)]  # t1 = t0 + M, |z| = exit_z exactly
    assert list(ev.columns) == list(EVENT_COLUMNS)
    row = ev.iloc[0]
    assert row.t0_ts == 1 * MINUTE_NS
    assert row.t1_ts == 4 * MINUTE_NS
    assert row.bars_held == 3
    assert row.z0 == 2.5
    assert row.z1 == 0.5
    assert not row.excluded
    assert not row.censored


def test_ai1_reversion_one_bar_too_late_is_0() -> None:
    ev = _events([0.0, 2.5, 1.5, 1.0, 0.6, 0.4])
    assert _rows(ev) == [(1, 4, 1, 0)]


def test_ai1_never_reached_is_0_at_horizon() -> None:
    ev = _events([0.0, 2.5, 1.9, 1.5, 1.2, 1.0, 1.0, 1.0])
    assert _rows(ev) == [(1, 4, 1, 0)]
    assert ev.bars_held.tolist() == [3]


def test_ai1_reached_then_lost_stays_1_at_first_reach() -> None:
    ev = _events([0.0, 2.5, 0.4, 1.9, 1.5, 1.0])
    assert _rows(ev) == [(1, 2, 1, 1)]


def test_ai1_excluded_by_speed() -> None:
    ev = _events([0.0, 2.5, 0.3, 0.0, 0.0], dz=[0.0, 0.13, 0.0, 0.0, 0.0])
    assert ev.excluded.tolist() == [True]
    assert ev.label.tolist() == [-1]
    assert ev.t1.tolist() == [-1]
    assert ev.bars_held.tolist() == [-1]
    assert ev.censored.tolist() == [False]
    assert np.isnan(ev.z1.iloc[0])


def test_ai1_speed_at_the_limit_is_kept() -> None:
    ev = _events([0.0, 2.5, 0.3, 0.0, 0.0], dz=[0.0, 0.12, 0.0, 0.0, 0.0])
    assert ev.excluded.tolist() == [False]
    assert _rows(ev) == [(1, 2, 1, 1)]


def test_ai1_overlapping_events_are_labelled_each_on_its_own() -> None:
    # leaves the band at 2, re-enters at 3: windows (1, 4] and (3, 6] overlap
    ev = _events([0.0, 2.5, 1.9, 2.2, 2.1, 1.0, 0.4, 0.0])
    assert _rows(ev) == [(1, 4, 1, 0), (3, 6, 1, 1)]


def test_ai1_staying_in_the_band_opens_one_event() -> None:
    ev = _events([0.0, 2.5, 2.6, 2.8, 2.4, 2.2, 0.1])
    assert _rows(ev) == [(1, 4, 1, 0)]


def test_ai1_sign_flip_through_the_band_opens_a_new_event() -> None:
    ev = _events([0.0, 2.5, -2.5, -1.0, 0.3, 0.0, 0.0])
    assert _rows(ev) == [(1, 4, 1, 1), (2, 4, -1, 1)]


def test_ai1_censored_at_end_of_data() -> None:
    ev = _events([0.0, 0.0, 2.5, 1.5, 1.0])
    assert _rows(ev) == [(2, -1, 1, -1)]
    assert ev.censored.tolist() == [True]
    assert ev.excluded.tolist() == [False]
    assert ev.t1_ts.iloc[0] == np.iinfo(np.int64).min


def test_ai1_reached_before_end_of_data_is_not_censored() -> None:
    ev = _events([0.0, 2.5, 0.3])
    assert _rows(ev) == [(1, 2, 1, 1)]
    assert ev.censored.tolist() == [False]


def test_ai1_negative_direction_event() -> None:
    ev = _events([0.0, -2.2, -1.0, -0.5, 0.0])
    assert _rows(ev) == [(1, 3, -1, 1)]
    assert ev.z0.tolist() == [-2.2]


def test_ai1_warm_up_nan_opens_nothing() -> None:
    dz_warm = [NAN, NAN, NAN, 0.0, 0.0]
    assert _events([NAN, NAN, 2.5, 2.4, 0.3], dz=dz_warm).empty
    # the first finite bar opens when both inputs are there
    ev = _events([NAN, NAN, 2.5, 2.4, 0.3], dz=[NAN, NAN, 0.0, 0.0, 0.0])
    assert _rows(ev) == [(2, 4, 1, 1)]


def test_ai1_nan_is_never_a_reversion() -> None:
    ev = _events([0.0, 2.5, NAN, NAN, 1.0, 0.0])
    assert _rows(ev) == [(1, 4, 1, 0)]


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_ai1_inf_raises_naming_array_and_index(bad: float) -> None:
    z = np.array([0.0, 2.5, 1.0, bad, 0.0])
    with pytest.raises(ValueError, match=r"\bz\b.*index 3"):
        ai1_events(_ts(5), z, np.zeros(5), AI1)
    dz = np.array([0.0, 0.0, bad, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"dz_abs_ema.*index 2"):
        ai1_events(_ts(5), np.zeros(5), dz, AI1)


def test_ai1_length_mismatch_names_arrays() -> None:
    with pytest.raises(ValueError, match=r"ts=5, z=4, dz_abs_ema=5"):
        ai1_events(_ts(5), np.zeros(4), np.zeros(5), AI1)


def test_ai1_ts_must_increase() -> None:
    ts = np.array([0, 1, 1, 2], dtype=np.int64)
    with pytest.raises(ValueError, match=r"ts is not strictly increasing at index 2"):
        ai1_events(ts, np.zeros(4), np.zeros(4), AI1)


def test_ai1_empty_input_gives_empty_frame() -> None:
    ev = ai1_events(_ts(0), np.zeros(0), np.zeros(0), AI1)
    assert ev.empty
    assert list(ev.columns) == list(EVENT_COLUMNS)


# --- AI1 properties ------------------------------------------------------------------------


def _oracle(z: np.ndarray, dz: np.ndarray, p: AI1LabelPolicy) -> list[tuple[int, ...]]:
    """Plain-loop reading of the rule: (t0, t1, direction, label, excluded, censored)."""
    out: list[tuple[int, ...]] = []
    n = len(z)
    for t in range(n):
        if not (np.isfinite(z[t]) and np.isfinite(dz[t]) and abs(z[t]) >= p.entry_z):
            continue
        prev = z[t - 1] if t > 0 else NAN
        if abs(prev) >= p.entry_z and np.sign(prev) == np.sign(z[t]):
            continue
        side = int(np.sign(z[t]))
        if dz[t] > p.max_dz_ema:
            out.append((t, -1, side, -1, 1, 0))
            continue
        window = range(t + 1, min(t + p.horizon_bars, n - 1) + 1)
        hit = next((k for k in window if abs(z[k]) <= p.exit_z), None)
        if hit is not None:
            out.append((t, hit, side, 1, 0, 0))
        elif t + p.horizon_bars <= n - 1:
            out.append((t, t + p.horizon_bars, side, 0, 0, 0))
        else:
            out.append((t, -1, side, -1, 0, 1))
    return out


@st.composite
def _paths(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, AI1LabelPolicy]:
    n = draw(st.integers(0, 80))
    warm = draw(st.integers(0, min(n, 5)))
    z_tail = draw(st.lists(st.floats(-4.0, 4.0), min_size=n - warm, max_size=n - warm))
    dz_tail = draw(st.lists(st.floats(0.0, 0.2), min_size=n - warm, max_size=n - warm))
    entry = draw(st.floats(0.5, 3.0))
    policy = AI1LabelPolicy(
        entry_z=entry,
        exit_z=draw(st.floats(0.0, entry * 0.9)),
        horizon_bars=draw(st.integers(1, 12)),
        max_dz_ema=0.15,
    )
    return np.array([NAN] * warm + z_tail), np.array([NAN] * warm + dz_tail), policy


@given(_paths())
def test_ai1_invariants_on_random_paths(
    case: tuple[np.ndarray, np.ndarray, AI1LabelPolicy],
) -> None:
    z, dz, p = case
    ev = ai1_events(_ts(len(z)), z, dz, p)
    got = [
        (r.t0, r.t1, r.direction, r.label, int(r.excluded), int(r.censored))
        for r in ev.itertuples(index=False)
    ]
    assert got == _oracle(z, dz, p)
    for r in ev.itertuples(index=False):
        if r.label == 1:
            assert abs(z[r.t1]) <= p.exit_z
            inside = np.abs(z[r.t0 + 1 : r.t1])
            assert not np.any(inside <= p.exit_z)
        if r.label >= 0:
            assert 0 < r.t1 - r.t0 <= p.horizon_bars
            assert r.bars_held == r.t1 - r.t0
    targets = ai3_targets(ev, z, p)
    labelled = ev.label.to_numpy() >= 0
    assert np.all(np.isnan(targets[~labelled]))
    finite = targets[labelled & np.isfinite(targets)]
    assert np.all((finite >= 0.0) & (finite <= 1.0))


# --- AI2 -----------------------------------------------------------------------------------

_AI2_LIMITS = {
    "rho_var": AI2.rho_var_max,
    "atr_ratio": AI2.atr_ratio_max,
    "dz_abs_ema": AI2.dz_ema_max,
    "dd_recent": AI2.dd_recent_max,
}


def _ai2(**overrides: list[float]) -> tuple[np.ndarray, np.ndarray]:
    n = len(next(iter(overrides.values()))) if overrides else 6
    arrays = {name: np.zeros(n) for name in _AI2_LIMITS}
    arrays.update({name: np.array(v) for name, v in overrides.items()})
    return ai2_labels(**arrays, policy=AI2)


@pytest.mark.parametrize("name", list(_AI2_LIMITS))
def test_ai2_each_condition_alone_triggers(name: str) -> None:
    values = [0.0] * 6
    values[3] = _AI2_LIMITS[name] * 1.01
    label, t1 = _ai2(**{name: values})
    # window (t, t+2]: bars 1 and 2 see bar 3; bar 3 itself does not
    assert label.tolist() == [0, 1, 1, 0, -1, -1]
    assert t1.tolist() == [2, 3, 4, 5, -1, -1]
    assert label.dtype == np.int8
    assert t1.dtype == np.int64


@pytest.mark.parametrize("name", list(_AI2_LIMITS))
def test_ai2_value_at_the_limit_does_not_trigger(name: str) -> None:
    values = [0.0] * 6
    values[2] = _AI2_LIMITS[name]
    label, _ = _ai2(**{name: values})
    assert label.tolist() == [0, 0, 0, 0, -1, -1]


def test_ai2_condition_at_t_does_not_label_t() -> None:
    label, _ = _ai2(atr_ratio=[5.0, 0.0, 0.0, 0.0, 0.0])
    assert label.tolist() == [0, 0, 0, -1, -1]


def test_ai2_last_horizon_bars_are_unknown() -> None:
    label, t1 = _ai2(dd_recent=[0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    assert label.tolist() == [0, 0, 1, 1, -1, -1]
    assert t1.tolist()[-2:] == [-1, -1]


def test_ai2_nan_counts_as_false_but_all_nan_window_is_unknown() -> None:
    nan6 = [NAN] * 6
    label, t1 = ai2_labels(
        nan6, [NAN, NAN, NAN, 0.0, 2.0, 0.0], nan6, nan6, AI2
    )  # only atr_ratio is observed, from bar 3
    assert label.tolist() == [-1, 0, 1, 1, -1, -1]
    assert t1.tolist() == [-1, 3, 4, 5, -1, -1]


def test_ai2_inf_and_length_mismatch_raise() -> None:
    z = np.zeros(4)
    with pytest.raises(ValueError, match=r"dd_recent.*index 1"):
        ai2_labels(z, z, z, np.array([0.0, math.inf, 0.0, 0.0]), AI2)
    with pytest.raises(ValueError, match=r"rho_var=4, atr_ratio=3"):
        ai2_labels(z, z[:3], z, z, AI2)


def test_ai2_class_weights_cap_ratio() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [-1] * 7, dtype=np.int8)
    weights = ai2_class_weights(labels, cap=5.0)
    assert weights[0] == pytest.approx(100 / 180)
    assert weights[1] == pytest.approx(5.0 * 100 / 180)  # balanced 5.0 capped at 5x
    assert max(weights.values()) / min(weights.values()) == pytest.approx(5.0)


def test_ai2_class_weights_balanced_under_cap() -> None:
    weights = ai2_class_weights(np.array([0] * 60 + [1] * 40), cap=5.0)
    assert weights == pytest.approx({0: 100 / 120, 1: 100 / 80})


def test_ai2_class_weights_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="cap"):
        ai2_class_weights(np.array([0, 1]), cap=0.5)
    with pytest.raises(ValueError, match="no labelled bar"):
        ai2_class_weights(np.array([-1, -1]), cap=5.0)


# --- AI3 -----------------------------------------------------------------------------------


def _targets(z: list[float], dz: list[float] | None = None) -> np.ndarray:
    return ai3_targets(_events(z, dz), np.array(z), AI1)


def test_ai3_clean_full_reversion_is_1() -> None:
    assert _targets([0.0, 2.5, 1.5, 0.5]).tolist() == [1.0]
    assert _targets([0.0, 2.5, 1.5, 0.2]).tolist() == [1.0]  # overshoot is clipped


def test_ai3_adverse_excursion_lowers_target() -> None:
    # pnl 2.0, mae 0.5, planned 2.0 -> 2.0 / 2.5
    assert _targets([0.0, 2.5, 3.0, 0.5]).tolist() == [pytest.approx(0.8)]
    # short side: pnl -1*(-2.5 - -0.2) = 2.3, mae 1.0, planned 2.0 -> 2.3 / 3.0
    assert _targets([0.0, -2.5, -3.5, -1.0, -0.2]).tolist() == [pytest.approx(2.3 / 3.0)]


def test_ai3_failed_event_scores_partial_reversion_or_zero() -> None:
    # label 0: pnl 0.3, no adverse move -> 0.3 / 2.0
    assert _targets([0.0, 2.5, 2.4, 2.3, 2.2]).tolist() == [pytest.approx(0.15)]
    # ended further away: negative pnl -> 0
    assert _targets([0.0, 2.5, 2.8, 2.9, 2.7]).tolist() == [0.0]


def test_ai3_excluded_and_censored_are_nan() -> None:
    z = [0.0, 2.5, 0.3, 1.0, 0.0, -2.5, -1.5]
    dz = [0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    ev = _events(z, dz)
    assert ev.excluded.tolist() == [True, False]
    assert ev.censored.tolist() == [False, True]
    assert np.isnan(ai3_targets(ev, np.array(z), AI1)).all()


def test_ai3_aligned_with_mixed_events() -> None:
    z = [0.0, 2.5, 1.9, 2.2, 2.1, 1.0, 0.4, 0.0]
    targets = _targets(z)
    # event 1 (label 0, t1=4): pnl 0.4, mae max(0, 2.2-2.5) = 0 -> 0.2;
    # event 3 (label 1, t1=6): pnl 1.8, planned 1.7 -> clipped to 1
    assert targets.tolist() == [pytest.approx(0.2), 1.0]


def test_ai3_rejects_events_outside_z() -> None:
    ev = _events([0.0, 2.5, 1.5, 0.5])
    with pytest.raises(ValueError, match="outside z"):
        ai3_targets(ev, np.zeros(3), AI1)


# --- direction -----------------------------------------------------------------------------


def test_direction_exact_threshold_is_hold() -> None:
    close = np.array([100.0, 100.5, 100.0, 99.5, 1.14, 1.1457])
    # float noise: 99.5/100 - 1 < -0.005 and 1.1457/1.14 - 1 > 0.005, yet both are exact 0.5%
    assert 99.5 / 100.0 - 1 < -0.005
    assert 1.1457 / 1.14 - 1 > 0.005
    label, _ = direction_labels(close, DIRECTION)
    assert label.tolist() == [HOLD, HOLD, HOLD, SELL, HOLD, -1]


def test_direction_beyond_threshold_is_buy_or_sell() -> None:
    label, t1 = direction_labels(np.array([100.0, 100.51, 100.0, 99.49]), DIRECTION)
    assert label.tolist() == [BUY, SELL, SELL, -1]
    assert t1.tolist() == [1, 2, 3, -1]
    assert (SELL, HOLD, BUY) == (0, 1, 2)


def test_direction_last_horizon_bars_are_unknown() -> None:
    policy = DirectionLabelPolicy(threshold=0.005, horizon_bars=3)
    label, t1 = direction_labels(np.array([100.0, 100.0, 100.0, 101.0, 100.0, 99.0]), policy)
    assert label.tolist() == [BUY, HOLD, SELL, -1, -1, -1]
    assert t1.tolist() == [3, 4, 5, -1, -1, -1]
    short, short_t1 = direction_labels(np.array([100.0, 101.0]), policy)
    assert short.tolist() == [-1, -1]
    assert short_t1.tolist() == [-1, -1]


def test_direction_nan_close_is_unknown_and_bad_close_raises() -> None:
    label, _ = direction_labels(np.array([NAN, 100.0, 101.0]), DIRECTION)
    assert label.tolist() == [-1, BUY, -1]
    with pytest.raises(ValueError, match=r"close must be > 0.*index 1"):
        direction_labels(np.array([100.0, 0.0, 101.0]), DIRECTION)
    with pytest.raises(ValueError, match=r"close.*index 2"):
        direction_labels(np.array([100.0, 100.0, math.inf]), DIRECTION)
