"""Bars spaced as another timeframe's (daily bars ingested as 1h, which quarantines every month
as gaps) get a hint naming the timeframe they look like; bars that fit their timeframe, even
with weekends and holes, get none."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlcore.config import TIMEFRAMES
from mlcore.data._rules import SPACING_MIN_BARS, spacing_hint
from tests.conftest import CONFIG_ROOT, third_party_csv
from tests.unit.test_cli import _run


def _every(freq: str | pd.Timedelta, n: int = 200) -> pd.Series:
    return pd.Series(pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC"))


@pytest.mark.parametrize(("bars", "given"), [(b, g) for b in TIMEFRAMES for g in TIMEFRAMES])
def test_the_hint_names_the_spacing_only_when_it_is_another_timeframe(
    bars: str, given: str
) -> None:
    ts = _every(pd.Timedelta(seconds=TIMEFRAMES[bars]))
    hint = spacing_hint(ts, given)
    if TIMEFRAMES[bars] >= 2 * TIMEFRAMES[given]:
        assert hint.endswith(f"were they {bars} bars (`--timeframe {bars}`)?"), hint
        assert f"not {given}" in hint
    else:
        assert hint == ""


def test_weekday_bars_with_weekends_and_holes_read_as_daily() -> None:
    days = pd.Series(pd.bdate_range("2024-01-01", periods=300, tz="UTC"))
    days = days.drop(days.index[::7]).reset_index(drop=True)  # holidays and missing days
    assert "`--timeframe 1day`" in spacing_hint(days, "1h")
    assert spacing_hint(days, "1day") == ""
    # Hourly bars with a weekend each week and a hole now and then: they fit 1h.
    hours = _every("h", 24 * 60)
    hours = hours[(hours.dt.day_of_week < 5) & (hours.index % 97 != 0)]
    assert spacing_hint(hours, "1h") == ""


def test_a_short_file_or_a_spacing_between_timeframes_gets_no_hint() -> None:
    assert spacing_hint(_every("D", SPACING_MIN_BARS - 1), "1h") == ""
    assert spacing_hint(_every("2h"), "1h") == ""  # no timeframe is 2 h
    assert spacing_hint(pd.Series([pd.Timestamp("2024-01-01", tz="UTC")] * 20), "1h") == ""


def test_ingest_of_daily_bars_as_1h_says_so(archive: Path) -> None:
    code, out = _run(
        "ingest", "--config-root", str(CONFIG_ROOT), "--symbol", "GOOG", "--calendar", "xnys",
        "--timeframe", "1h", "--path", str(third_party_csv("GOOG.csv")),
    )  # fmt: skip
    assert "hint the bars are a median 24 h apart, not 1h: were they 1day bars" in out, out
    code, out = _run(
        "ingest", "--config-root", str(CONFIG_ROOT), "--symbol", "GOOG", "--calendar", "xnys",
        "--timeframe", "1day", "--path", str(third_party_csv("GOOG.csv")),
    )  # fmt: skip
    assert code == 0, out
    assert "hint" not in out
