"""The spellings users bring for the canonical timeframes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.config import TIMEFRAMES, parse_timeframe


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        *[(name, name) for name in TIMEFRAMES],
        ("1m", "1min"), ("1T", "1min"), ("60s", "1min"), ("minutely", "1min"),
        ("5m", "5min"), ("5MIN", "5min"), ("5 min", "5min"), ("5minutes", "5min"),
        ("15m", "15min"), ("30m", "30min"),
        ("60min", "1h"), ("60m", "1h"), ("1H", "1h"), ("h", "1h"), ("H", "1h"),
        ("hourly", "1h"), ("1hour", "1h"), ("1hr", "1h"),
        ("4H", "4h"), ("240min", "4h"), ("4hours", "4h"),
        ("1d", "1day"), ("1D", "1day"), ("D", "1day"), ("daily", "1day"), ("Daily", "1day"),
        ("24h", "1day"), ("1440min", "1day"), ("day", "1day"),
    ],
)  # fmt: skip
def test_accepted_spellings(text: str, canonical: str) -> None:
    assert parse_timeframe(text) == canonical


@pytest.mark.parametrize("text", ["1M", "M", "3M"])
def test_upper_case_m_is_refused_as_a_possible_month(text: str) -> None:
    with pytest.raises(ValueError, match="ambiguous") as info:
        parse_timeframe(text)
    assert "1min" in str(info.value)


@pytest.mark.parametrize("text", ["7m", "2h", "1w", "1W", "weekly", "bogus", "", "0m", "1y"])
def test_other_text_names_the_value_and_the_accepted_spellings(text: str) -> None:
    with pytest.raises(ValueError, match="is not one of the timeframes") as info:
        parse_timeframe(text)
    message = str(info.value)
    assert repr(text) in message
    assert all(name in message for name in TIMEFRAMES)
    assert "60min" in message and "daily" in message


@given(st.text(max_size=12))
def test_any_text_is_a_canonical_timeframe_or_a_value_error(text: str) -> None:
    try:
        got = parse_timeframe(text)
    except ValueError:
        return
    assert got in TIMEFRAMES
    assert parse_timeframe(got) == got  # canonical names are fixed points


@given(st.sampled_from(sorted(TIMEFRAMES)), st.sampled_from(["", " "]), st.booleans())
def test_count_and_unit_spellings_round_trip(name: str, gap: str, upper: bool) -> None:
    seconds = TIMEFRAMES[name]
    spelled = f"{seconds // 60}{gap}min" if seconds < 3600 else f"{seconds // 3600}{gap}h"
    assert parse_timeframe(spelled.upper() if upper and spelled.endswith("h") else spelled) == name
