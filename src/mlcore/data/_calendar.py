"""Expected bar open times for a trading calendar: the grid that gaps are measured against."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES, CalendarSpec
from mlcore.config._schemas import ExchangeSession, WeeklySession

_WEEKDAYS = {"Mon": 0, "Tue": 1, "Wed": 2, "Thu": 3, "Fri": 4, "Sat": 5, "Sun": 6}
_MIN_PER_WEEK = 7 * 24 * 60


def _week_minute(weekday: str, hhmm: str) -> int:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return _WEEKDAYS[weekday] * 1440 + hours * 60 + minutes


def _weekly_open_mask(local: pd.DatetimeIndex, spec: WeeklySession) -> np.ndarray:
    wm = local.day_of_week.to_numpy() * 1440 + local.hour.to_numpy() * 60 + local.minute.to_numpy()
    start = _week_minute(spec.open_weekday, spec.open_time)
    end = _week_minute(spec.close_weekday, spec.close_time)
    # Open span may wrap the week (e.g. Sun 17:00 -> Fri 17:00).
    rel = (wm - start) % _MIN_PER_WEEK
    span = (end - start) % _MIN_PER_WEEK
    return np.asarray(rel < span)


def _holiday_mask(local: pd.DatetimeIndex, spec: WeeklySession) -> np.ndarray:
    if not spec.holidays_mmdd:
        return np.zeros(len(local), dtype=bool)
    # A session opening in the afternoon belongs to the next day's trading date (FX: a
    # holiday on 12-25 closes the market from 12-24 17:00 New York time).
    hours, minutes = (int(x) for x in spec.open_time.split(":"))
    shift = pd.Timedelta(hours=24 - hours, minutes=-minutes) if hours >= 12 else pd.Timedelta(0)
    mmdd = (local + shift).strftime("%m-%d")
    return np.asarray(mmdd.isin(spec.holidays_mmdd))


def _weekly_daily(start: pd.Timestamp, end: pd.Timestamp, spec: WeeklySession) -> pd.DatetimeIndex:
    days = pd.date_range(start.normalize(), end.normalize(), freq="D", tz="UTC")
    open_day, close_day = _WEEKDAYS[spec.open_weekday], _WEEKDAYS[spec.close_weekday]
    first = open_day if int(spec.open_time[:2]) < 12 else (open_day + 1) % 7
    last = close_day if int(spec.close_time[:2]) >= 12 else (close_day - 1) % 7
    span = (last - first) % 7
    rel = (days.day_of_week.to_numpy() - first) % 7
    keep = rel <= span
    keep &= ~np.asarray(days.strftime("%m-%d").isin(spec.holidays_mmdd))
    return days[keep]


@contextmanager
def _quiet_xcals() -> Iterator[None]:
    # exchange_calendars 4.x trips a pandas 3.1 deprecation inside its own code; not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*values returning an ndarray")
        yield


@lru_cache(maxsize=16)
def _exchange_calendar(name: str, first_year: int, last_year: int) -> object:
    with _quiet_xcals():
        # One spare year each side: a range may begin before the year's first session.
        return xcals.get_calendar(
            name, start=f"{first_year - 1}-01-01", end=f"{last_year + 1}-12-31"
        )


def _exchange_grid(
    start: pd.Timestamp, end: pd.Timestamp, spec: ExchangeSession, step_s: int
) -> pd.DatetimeIndex:
    cal = _exchange_calendar(spec.exchange, start.year, end.year)
    with _quiet_xcals():
        if step_s == 86400:
            sessions = cal.sessions_in_range(  # type: ignore[attr-defined]
                start.tz_convert(None).normalize(), end.tz_convert(None).normalize()
            )
            return pd.DatetimeIndex(sessions).tz_localize("UTC")
        minutes = pd.DatetimeIndex(cal.minutes_in_range(start, end))  # type: ignore[attr-defined]
    return minutes.floor(f"{step_s}s").unique()


def expected_grid(
    spec: CalendarSpec, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DatetimeIndex:
    """Return the UTC bar open times a market with ``spec`` should have in [start, end]."""
    step_s = TIMEFRAMES[timeframe]
    if end < start:
        return pd.DatetimeIndex([], tz="UTC")
    if isinstance(spec, ExchangeSession):
        grid = _exchange_grid(start, end, spec, step_s)
    elif isinstance(spec, WeeklySession) and step_s == 86400:
        grid = _weekly_daily(start, end, spec)
    else:
        grid = pd.date_range(start.floor(f"{step_s}s"), end, freq=f"{step_s}s", tz="UTC")
        if isinstance(spec, WeeklySession):
            local = grid.tz_convert(spec.timezone)
            grid = grid[_weekly_open_mask(local, spec) & ~_holiday_mask(local, spec)]
    return grid[(grid >= start) & (grid <= end)]
