"""Expected bar grids for the universe's trading calendars (FX, crypto, XNYS)."""

from __future__ import annotations

import exchange_calendars as xcals
import pandas as pd
import pytest

from mlcore.config import AppConfig, CalendarSpec
from mlcore.data import FileProvider, expected_grid
from tests.conftest import third_party_csv

H = pd.Timedelta(hours=1)


def _t(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def _hours(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(_t(start), _t(end), freq="h")


def _breaks(grid: pd.DatetimeIndex, step: pd.Timedelta = H) -> list[tuple[str, str]]:
    """(last bar before, first bar after) of every hole in the grid."""
    s = pd.Series(grid)
    holes = s.diff() > step
    return [
        (s[i - 1].strftime("%Y-%m-%d %H:%M"), s[i].strftime("%Y-%m-%d %H:%M"))
        for i in s.index[holes]
    ]


@pytest.fixture
def fx(cfg: AppConfig) -> CalendarSpec:
    return cfg.universe.calendars["fx"]


@pytest.fixture
def crypto(cfg: AppConfig) -> CalendarSpec:
    return cfg.universe.calendars["crypto"]


@pytest.fixture
def xnys(cfg: AppConfig) -> CalendarSpec:
    return cfg.universe.calendars["xnys"]


# --- FX: Sunday 17:00 to Friday 17:00 New York ---------------------------------------------


@pytest.mark.parametrize(
    ("friday", "sunday", "last_bar", "first_bar"),
    [
        # Winter (EST, UTC-5): close and open at 22:00 UTC.
        ("2024-01-12", "2024-01-14", "2024-01-12 21:00", "2024-01-14 22:00"),
        # Summer (EDT, UTC-4): close and open at 21:00 UTC.
        ("2024-07-12", "2024-07-14", "2024-07-12 20:00", "2024-07-14 21:00"),
        # Clocks spring forward on Sunday 2024-03-10: close in EST, open in EDT.
        ("2024-03-08", "2024-03-10", "2024-03-08 21:00", "2024-03-10 21:00"),
        # Clocks fall back on Sunday 2024-11-03: close in EDT, open in EST.
        ("2024-11-01", "2024-11-03", "2024-11-01 20:00", "2024-11-03 22:00"),
    ],
    ids=["winter", "summer", "spring-forward", "fall-back"],
)
def test_fx_weekend_closes_friday_and_opens_sunday_17_new_york(
    fx: CalendarSpec, friday: str, sunday: str, last_bar: str, first_bar: str
) -> None:
    grid = expected_grid(fx, "1h", _t(f"{friday} 00:00"), _t(f"{sunday} 23:00") + 24 * H)
    assert _breaks(grid) == [(last_bar, first_bar)]
    # Every hour of Friday up to the close and of Sunday evening/Monday is there.
    assert grid[0] == _t(f"{friday} 00:00")
    assert grid[-1] == _t(f"{sunday} 23:00") + 24 * H
    local_close = grid[grid <= _t(last_bar)][-1].tz_convert("America/New_York")
    local_open = grid[grid >= _t(first_bar)][0].tz_convert("America/New_York")
    assert (local_close.day_name(), local_close.hour) == ("Friday", 16)
    assert (local_open.day_name(), local_open.hour) == ("Sunday", 17)


def test_fx_full_week_has_120_hourly_bars(fx: CalendarSpec) -> None:
    grid = expected_grid(fx, "1h", _t("2024-02-04 00:00"), _t("2024-02-10 23:00"))
    assert len(grid) == 5 * 24
    assert grid[0] == _t("2024-02-04 22:00")
    assert grid[-1] == _t("2024-02-09 21:00")
    assert grid.equals(_hours("2024-02-04 22:00", "2024-02-09 21:00"))


def test_fx_15min_grid_at_the_sunday_open(fx: CalendarSpec) -> None:
    grid = expected_grid(fx, "15min", _t("2024-01-14 21:00"), _t("2024-01-14 23:00"))
    assert [t.strftime("%H:%M") for t in grid] == [
        "22:00",
        "22:15",
        "22:30",
        "22:45",
        "23:00",
    ]


@pytest.mark.parametrize(
    ("start", "end", "eve_last", "after_first"),
    [
        # 2024-12-25 is a Wednesday: closed from 12-24 17:00 to 12-25 17:00 New York.
        ("2024-12-23", "2024-12-27", "2024-12-24 21:00", "2024-12-25 22:00"),
        # 2025-01-01 is a Wednesday: closed from 12-31 17:00 to 01-01 17:00 New York.
        ("2024-12-30", "2025-01-03", "2024-12-31 21:00", "2025-01-01 22:00"),
    ],
    ids=["christmas", "new-year"],
)
def test_fx_holiday_closes_the_session_opening_the_evening_before(
    fx: CalendarSpec, start: str, end: str, eve_last: str, after_first: str
) -> None:
    grid = expected_grid(fx, "1h", _t(start), _t(end))
    assert _breaks(grid) == [(eve_last, after_first)]
    assert not grid.isin(_hours(eve_last, after_first)[1:-1]).any()


def test_fx_christmas_on_sunday_keeps_the_sunday_open_for_monday(fx: CalendarSpec) -> None:
    # 2022-12-25 is a Sunday: the session opening that evening trades 12-26 and is open.
    grid = expected_grid(fx, "1h", _t("2022-12-23"), _t("2022-12-27"))
    assert _breaks(grid) == [("2022-12-23 21:00", "2022-12-25 22:00")]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (
            "2024-12-19",
            "2025-01-06",
            [
                "2024-12-19",
                "2024-12-20",
                "2024-12-23",
                "2024-12-24",
                "2024-12-26",
                "2024-12-27",
                "2024-12-30",
                "2024-12-31",
                "2025-01-02",
                "2025-01-03",
                "2025-01-06",
            ],
        ),
        ("2024-03-08", "2024-03-11", ["2024-03-08", "2024-03-11"]),
        ("2024-07-06", "2024-07-07", []),
    ],
)
def test_fx_daily_grid_is_weekdays_without_holidays(
    fx: CalendarSpec, start: str, end: str, expected: list[str]
) -> None:
    grid = expected_grid(fx, "1day", _t(start), _t(end))
    assert list(grid) == [_t(d) for d in expected]


def test_fx_daily_grid_over_a_year_is_monday_to_friday(fx: CalendarSpec) -> None:
    grid = expected_grid(fx, "1day", _t("2023-01-01"), _t("2023-12-31"))
    assert set(grid.day_of_week) == {0, 1, 2, 3, 4}
    assert (grid == grid.normalize()).all()
    weekdays = pd.bdate_range("2023-01-01", "2023-12-31", tz="UTC")
    # 2023-12-25 is a Monday; 2023-01-01 a Sunday (not in bdate_range anyway).
    assert grid.equals(weekdays.drop(_t("2023-12-25")))


# --- crypto: always open -----------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", ["1min", "15min", "1h", "4h", "1day"])
def test_crypto_expects_every_bar(crypto: CalendarSpec, timeframe: str) -> None:
    freq = {"1min": "min", "15min": "15min", "1h": "h", "4h": "4h", "1day": "D"}[timeframe]
    start, end = _t("2024-03-08 00:00"), _t("2024-03-12 00:00")  # spans a US DST change
    grid = expected_grid(crypto, timeframe, start, end)
    assert grid.equals(pd.date_range(start, end, freq=freq))


def test_crypto_grid_starts_at_the_first_bar_boundary_inside_the_range(
    crypto: CalendarSpec,
) -> None:
    grid = expected_grid(crypto, "1h", _t("2023-12-31 22:30"), _t("2024-01-01 01:59"))
    assert list(grid) == [_t("2023-12-31 23:00"), _t("2024-01-01 00:00"), _t("2024-01-01 01:00")]


def test_empty_when_end_before_start(crypto: CalendarSpec, fx: CalendarSpec) -> None:
    for spec in (crypto, fx):
        grid = expected_grid(spec, "1h", _t("2024-01-02"), _t("2024-01-01"))
        assert len(grid) == 0
        assert str(grid.tz) == "UTC"


# --- XNYS: exchange_calendars sessions -----------------------------------------------------


def test_xnys_daily_equals_exchange_calendars_sessions(xnys: CalendarSpec) -> None:
    # 2022-01-03 and 2024-12-31 are the first and last sessions of their years.
    grid = expected_grid(xnys, "1day", _t("2022-01-03"), _t("2024-12-31"))
    cal = xcals.get_calendar("XNYS", start="2021-06-01", end="2025-06-30")
    sessions = pd.DatetimeIndex(cal.sessions_in_range("2022-01-03", "2024-12-31"))
    assert grid.equals(sessions.tz_localize("UTC"))
    assert len(grid) == len(sessions) > 700
    assert grid.equals(grid.normalize())


def test_xnys_daily_matches_exchange_calendars_on_an_inner_window(xnys: CalendarSpec) -> None:
    grid = expected_grid(xnys, "1day", _t("2012-10-15"), _t("2012-11-30"))
    cal = xcals.get_calendar("XNYS", start="2012-01-01", end="2012-12-31")
    sessions = pd.DatetimeIndex(cal.sessions_in_range("2012-10-15", "2012-11-30"))
    assert grid.equals(sessions.tz_localize("UTC"))
    # Hurricane Sandy closed the exchange on 2012-10-29 and 2012-10-30.
    assert _t("2012-10-29") not in grid and _t("2012-10-30") not in grid
    assert _t("2012-10-31") in grid


@pytest.mark.parametrize(
    "holiday",
    ["2024-07-04", "2024-06-19", "2024-03-29", "2024-11-28", "2024-12-25", "2024-01-15"],
    ids=["independence", "juneteenth", "good-friday", "thanksgiving", "christmas", "mlk"],
)
def test_xnys_daily_skips_holidays(xnys: CalendarSpec, holiday: str) -> None:
    grid = expected_grid(xnys, "1day", _t("2024-01-02"), _t("2024-12-31"))
    assert _t(holiday) not in grid
    day = _t(holiday)
    neighbours = [d for d in (day - 24 * H, day + 24 * H) if d.day_of_week < 5]
    assert any(d in grid for d in neighbours)


def test_xnys_daily_around_independence_day(xnys: CalendarSpec) -> None:
    grid = expected_grid(xnys, "1day", _t("2024-07-01"), _t("2024-07-08"))
    assert list(grid) == [
        _t("2024-07-01"),
        _t("2024-07-02"),
        _t("2024-07-03"),
        _t("2024-07-05"),
        _t("2024-07-08"),
    ]


def test_xnys_daily_accepts_an_intraday_end(xnys: CalendarSpec) -> None:
    # Regression: an end that was not midnight used to raise inside exchange_calendars.
    grid = expected_grid(xnys, "1day", _t("2024-07-01"), _t("2024-07-08 15:00"))
    assert list(grid) == [
        _t("2024-07-01"),
        _t("2024-07-02"),
        _t("2024-07-03"),
        _t("2024-07-05"),
        _t("2024-07-08"),
    ]


@pytest.mark.parametrize(
    ("timeframe", "start", "end", "first"),
    [
        ("1day", "2024-01-01", "2024-01-05", "2024-01-02"),
        ("1day", "2022-12-28", "2022-12-31", "2022-12-28"),
        ("1h", "2024-01-02 14:00", "2024-01-02 20:00", "2024-01-02 14:00"),
    ],
    ids=["day-start-on-new-year", "day-end-on-saturday", "hour-start-first-open"],
)
def test_xnys_grid_at_the_edges_of_a_year(
    xnys: CalendarSpec, timeframe: str, start: str, end: str, first: str
) -> None:
    # Regression: the exchange calendar used to be bounded by exactly the years of the range,
    # so these raised DateOutOfBounds / MinuteOutOfBounds.
    grid = expected_grid(xnys, timeframe, _t(start), _t(end))
    assert grid[0] == _t(first)


def test_xnys_hourly_covers_regular_and_early_close_sessions(xnys: CalendarSpec) -> None:
    grid = expected_grid(xnys, "1h", _t("2024-07-02 00:00"), _t("2024-07-05 23:00"))
    by_day = {
        d: [t.hour for t in grid if t.strftime("%m-%d") == d]
        for d in ("07-02", "07-03", "07-04", "07-05")
    }
    assert by_day == {
        "07-02": [13, 14, 15, 16, 17, 18, 19],  # 09:30-16:00 EDT
        "07-03": [13, 14, 15, 16],  # early close 13:00 EDT
        "07-04": [],
        "07-05": [13, 14, 15, 16, 17, 18, 19],
    }


# --- real third-party files against their calendars ----------------------------------------


def test_real_eurusd_has_no_missing_bar_against_the_fx_grid(fx: CalendarSpec) -> None:
    bars = FileProvider(third_party_csv("EURUSD.csv")).read("1h").bars
    ts = pd.DatetimeIndex(bars["ts"])
    grid = expected_grid(fx, "1h", ts[0], ts[-1])
    assert len(grid.difference(ts)) == 0
    # The only bars outside the grid are two vendor prints in the Friday 17:00 NY hour.
    extra = ts.difference(grid)
    assert list(extra) == [_t("2017-10-06 21:00"), _t("2017-10-20 21:00")]
    assert len(grid) == len(ts) - 2


def test_real_goog_has_no_missing_session_against_xnys(xnys: CalendarSpec) -> None:
    bars = FileProvider(third_party_csv("GOOG.csv")).read("1day").bars
    ts = pd.DatetimeIndex(bars["ts"])
    grid = expected_grid(xnys, "1day", ts[0], ts[-1])
    assert len(grid.difference(ts)) == 0
    assert len(ts.difference(grid)) == 0
    assert len(grid) == 2148
