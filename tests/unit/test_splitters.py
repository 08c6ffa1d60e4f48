"""Splitters: no label overlap between training and test, embargo respected, equal to skfolio's
CombinatorialPurgedCV and WalkForward on the same fixed-horizon input, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skfolio.model_selection import CombinatorialPurgedCV, WalkForward

from mlcore.validation import MonthlyWalkForward, PurgedGroupedKFold


@st.composite
def _setups(draw: st.DrawFn) -> tuple[PurgedGroupedKFold, np.ndarray, np.ndarray]:
    purge = draw(st.integers(0, 6))
    embargo = draw(st.integers(0, 6))
    n_folds = draw(st.integers(2, 6))
    cv = PurgedGroupedKFold(
        n_folds=n_folds,
        n_test_folds=draw(st.integers(1, n_folds - 1)),
        purge_bars=purge,
        embargo_bars=embargo,
        min_block_bars=purge + embargo + 1,
    )
    n_bars = draw(st.integers(n_folds * (purge + embargo + 1), 160))
    # Several samples may share a bar; label lengths vary (events end when they end).
    per_bar = draw(st.lists(st.integers(0, 3), min_size=n_bars, max_size=n_bars))
    per_bar[0] = max(per_bar[0], 1)
    t0 = np.repeat(np.arange(n_bars), per_bar)
    seed = draw(st.integers(0, 2**31))
    t1 = t0 + np.random.default_rng(seed).integers(0, 3 * purge + 2, len(t0))
    return cv, t0, t1


@given(setup=_setups())
def test_no_training_label_touches_a_test_block_or_its_embargo(
    setup: tuple[PurgedGroupedKFold, np.ndarray, np.ndarray],
) -> None:
    cv, t0, t1 = setup
    bars = np.unique(t0)
    size = len(bars) // cv.n_folds
    starts = np.arange(cv.n_folds) * size
    stops = np.r_[starts[1:], len(bars)] - 1
    if size == 0 or (bars[stops] - bars[starts] + 1 < cv.min_block_bars).any():
        with pytest.raises(ValueError, match=r"min_block_bars|cannot make"):
            list(cv.split(t0, groups=t0, label_end=t1))
        return
    splits = list(cv.split(t0, groups=t0, label_end=t1))
    assert len(splits) == cv.get_n_splits()
    for train, test in splits:
        assert not set(train) & set(test)
        assert len(test) > 0
        # Test samples form whole bars: no bar is split between test and anything else.
        assert not set(t0[test]) & set(t0[np.setdiff1d(np.arange(len(t0)), test)])
        # Each contiguous run of test bars is one test block (adjacent blocks merge).
        test_bars = np.unique(t0[test])
        runs = np.split(
            test_bars, np.flatnonzero(np.diff(np.searchsorted(np.unique(t0), test_bars)) > 1) + 1
        )
        for run in runs:
            in_run = np.isin(t0, run)
            lo, hi = t0[in_run].min(), t1[in_run].max()
            assert not np.any((t0[train] <= hi) & (t1[train] >= lo)), "label overlap"
            after = t0[train][t0[train] > hi]
            assert not np.any(after <= hi + cv.embargo_bars), "sample inside the embargo"


@pytest.mark.parametrize(
    ("n", "n_folds", "n_test_folds", "purge", "embargo"),
    [(1_000, 5, 2, 24, 24), (1_237, 6, 3, 10, 5), (480, 4, 2, 0, 7), (2_000, 10, 8, 24, 24)],
)
def test_equal_to_skfolio_combinatorial_purged_cv(
    n: int, n_folds: int, n_test_folds: int, purge: int, embargo: int
) -> None:
    x = np.zeros((n, 1))
    ours = PurgedGroupedKFold(
        n_folds, n_test_folds, purge, embargo, min_block_bars=purge + embargo + 1
    )
    theirs = CombinatorialPurgedCV(n_folds, n_test_folds, purged_size=purge, embargo_size=embargo)
    got = {tuple(test): tuple(train) for train, test in ours.split(x)}
    want = {tuple(np.concatenate(tests)): tuple(train) for train, tests in theirs.split(x)}
    assert len(got) == ours.get_n_splits() == theirs.get_n_splits() == len(want)
    assert got == want


def test_default_is_the_spec_k_fold() -> None:
    cv = PurgedGroupedKFold()
    x = np.zeros((5 * 240, 1))
    splits = list(cv.split(x))
    assert len(splits) == 5
    train, test = splits[2]  # block 480..719
    assert test[0] == 480 and test[-1] == 719
    # Before: labels [t, t + 24] must end before 480 -> train stops at 455.
    # After: starts after 719 + 24 (purge of test labels) + 24 (embargo) = 767.
    assert 455 in train and 456 not in train
    assert 767 not in train and 768 in train


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"purge_bars": 24, "embargo_bars": 24, "min_block_bars": 48}, "purge \\+ embargo \\+ 1"),
        ({"n_folds": 1}, "n_folds"),
        ({"n_test_folds": 5}, "n_test_folds"),
        ({"purge_bars": -1, "min_block_bars": 300}, "purge_bars"),
    ],
)
def test_bad_parameters_are_refused_clearly(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(PurgedGroupedKFold(**kwargs).split(np.zeros((10_000, 1))))


def test_too_few_bars_for_the_blocks_is_refused() -> None:
    with pytest.raises(ValueError, match=r"spans 199 bars \(0..198\).*min_block_bars=240"):
        list(PurgedGroupedKFold().split(np.zeros((999, 1))))


def test_sparse_events_are_blocked_by_their_span_in_bars() -> None:
    # 300 events spread over 6,000 bars: blocks of 60 events span ~1,200 bars each.
    t0 = np.sort(np.random.default_rng(0).choice(6_000, 300, replace=False))
    splits = list(PurgedGroupedKFold().split(t0, groups=t0, label_end=t0 + 48))
    assert len(splits) == 5
    assert all(len(test) == 60 for _, test in splits)


def test_bad_label_intervals_are_refused() -> None:
    cv = PurgedGroupedKFold(min_block_bars=49)
    x = np.zeros((500, 1))
    with pytest.raises(ValueError, match="sample 3 has bar 3 and label_end 2"):
        list(cv.split(x, label_end=np.r_[np.arange(3) + 5, 2, np.arange(4, 500)]))
    with pytest.raises(ValueError, match="non-decreasing"):
        list(cv.split(x, groups=np.r_[np.arange(250), np.arange(250)]))
    with pytest.raises(ValueError, match="one value per sample"):
        list(cv.split(x, groups=np.arange(10)))


def _hourly(start: str, end: str) -> pd.DataFrame:
    ts = pd.date_range(start, end, freq="h", tz="UTC")
    # FX-like: no weekend bars.
    ts = ts[ts.day_of_week < 5]
    return pd.DataFrame({"x": np.arange(len(ts), dtype=float)}, index=ts)


@pytest.mark.parametrize(
    ("start", "end", "days", "purge"),
    [
        ("2020-01-01", "2022-06-15", 360, 24),
        ("2019-03-17 13:00", "2021-12-31 23:00", 360, 24),
        ("2021-02-01", "2022-02-28", 200, 0),
    ],
)
def test_walk_forward_equals_skfolio(start: str, end: str, days: int, purge: int) -> None:
    x = _hourly(start, end)
    ours = list(MonthlyWalkForward(days, purge).split(x))
    theirs = list(
        WalkForward(
            test_size=1,
            train_size=pd.DateOffset(days=days),
            freq="MS",
            expand_train=True,
            purged_size=purge,
        ).split(x)
    )
    assert len(ours) == len(theirs) > 0
    for (a_train, a_test), (b_train, b_test) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a_train, b_train)
        np.testing.assert_array_equal(a_test, b_test)


def test_walk_forward_tests_whole_months_after_the_minimum_history() -> None:
    x = _hourly("2020-01-01", "2021-06-10")
    splits = list(MonthlyWalkForward().split(x))
    first_train, first_test = splits[0]
    assert x.index[first_test[0]] == pd.Timestamp("2021-01-01", tz="UTC")  # 2020-01-01 + 360d
    assert x.index[first_test[-1]] < pd.Timestamp("2021-02-01", tz="UTC")
    assert first_train[-1] == first_test[0] - 25
    last_test = splits[-1][1]
    assert x.index[last_test[0]].month == 5  # June is incomplete: not tested


def test_walk_forward_refuses_inputs_without_a_utc_time_index() -> None:
    with pytest.raises(ValueError, match="DatetimeIndex"):
        list(MonthlyWalkForward().split(np.zeros((10, 1))))
    naive = pd.DataFrame({"x": range(3)}, index=pd.date_range("2020-01-01", periods=3, freq="h"))
    with pytest.raises(ValueError, match="timezone-aware"):
        list(MonthlyWalkForward().split(naive))
