"""Property tests of the day/month order (issue 16): whatever the dates, a file written day
first or month first is read right or refused whole; no bar is ever moved to another date."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from mlcore.data import parse_table
from mlcore.errors import BadDataError

NOW = pd.Timestamp("2100-01-01", tz="UTC")  # every generated date is in the past
_SPELLING = {"dmy": ("%d", "%m"), "mdy": ("%m", "%d")}


@st.composite
def files(draw: st.DrawFn) -> tuple[list[pd.Timestamp], list[str], str]:
    """Distinct hourly bars, and their stamps written in one order, separator and padding."""
    days = draw(
        st.lists(st.dates(pd.Timestamp("1990-01-01").date(), pd.Timestamp("2060-12-31").date()),
                 min_size=1, max_size=30, unique=True)
    )  # fmt: skip
    hours = draw(st.lists(st.integers(0, 23), min_size=len(days), max_size=len(days)))
    true = sorted(
        pd.Timestamp(d, tz="UTC") + pd.Timedelta(hours=h) for d, h in zip(days, hours, strict=True)
    )
    order = draw(st.sampled_from(sorted(_SPELLING)))
    sep = draw(st.sampled_from("/.-"))
    padded = draw(st.booleans())
    first, second = _SPELLING[order]
    if not padded:
        first, second = first.replace("%", "%-"), second.replace("%", "%-")
    fmt = f"{first}{sep}{second}{sep}%Y %H:%M"
    return true, [t.strftime(fmt) for t in true], order


def _frame(stamps: list[str]) -> pd.DataFrame:
    n = len(stamps)
    return pd.DataFrame({"timestamp": stamps, "open": ["1"] * n, "high": ["2"] * n,
                         "low": ["0.5"] * n, "close": ["1.5"] * n})  # fmt: skip


def _decidable(true: list[pd.Timestamp]) -> bool:
    return any(t.day > 12 for t in true) or all(t.day == t.month for t in true)


@given(files())
def test_a_file_in_one_order_is_read_right_or_refused_whole(
    case: tuple[list[pd.Timestamp], list[str], str],
) -> None:
    true, stamps, _ = case
    if not _decidable(true):
        event("refused")
        with pytest.raises(BadDataError, match="DATA_FILE_DATE_AMBIGUOUS"):
            parse_table(_frame(stamps), origin="f", timeframe="1h", now=NOW)
        return
    event("read")
    result = parse_table(_frame(stamps), origin="f", timeframe="1h", now=NOW)
    assert result.rejects == []
    assert result.bars["ts"].tolist() == true


@given(files())
def test_with_its_order_given_every_file_is_read_right(
    case: tuple[list[pd.Timestamp], list[str], str],
) -> None:
    true, stamps, order = case
    result = parse_table(_frame(stamps), origin="f", timeframe="1h", now=NOW, date_format=order)
    assert result.rejects == []
    assert result.bars["ts"].tolist() == true


@given(files())
def test_with_the_other_order_given_no_row_is_read_as_another_date_unless_it_could_be(
    case: tuple[list[pd.Timestamp], list[str], str],
) -> None:
    """Given the wrong order, a row is rejected when it cannot be read so, and read so only
    when it can (a row with a day of 12 or less is genuinely both)."""
    true, stamps, order = case
    other = "mdy" if order == "dmy" else "dmy"
    result = parse_table(_frame(stamps), origin="f", timeframe="1h", now=NOW, date_format=other)
    rejected = {r.row - 1 for r in result.rejects}
    assert rejected == {i for i, t in enumerate(true) if t.day > 12}
    kept = sorted(
        t.replace(day=t.month, month=t.day) for i, t in enumerate(true) if i not in rejected
    )
    assert result.bars["ts"].tolist() == kept


@pytest.mark.parametrize("order", ["dmy", "mdy"])
def test_one_row_in_the_other_order_among_decided_rows_is_named(order: str) -> None:
    true = list(pd.date_range("2024-04-10", periods=96, freq="h", tz="UTC"))
    first, second = _SPELLING[order]
    stamps = [t.strftime(f"{first}/{second}/%Y %H:%M") for t in true]
    stamps[50] = true[50].strftime(f"{second}/{first}/%Y %H:%M")  # day 12: both ways valid
    stamps[80] = true[80].strftime(f"{second}/{first}/%Y %H:%M")  # day 13: only the other way
    with pytest.raises(BadDataError) as info:
        parse_table(_frame(stamps), origin="f", timeframe="1h", row_offset=2, now=NOW)
    assert info.value.code == "DATA_FILE_DATE_CONFLICT"
    assert f"(first row 82: {stamps[80]!r})" in info.value.message
