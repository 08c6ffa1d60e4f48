"""The table parser and the file provider on the file shapes users really have."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.data import BAR_COLUMNS, FileProvider, check_date_format, parse_table
from mlcore.errors import BadDataError, FatalError
from tests.conftest import third_party_csv

UTC = "UTC"


def _utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz=UTC) for s in stamps]


def _frame(ts: list[object], **extra: list[object]) -> pd.DataFrame:
    """Text OHLCV rows with valid prices (open 1.0, high 2.0, low 0.5, close 1.5, volume 10)."""
    n = len(ts)
    data: dict[str, list[object]] = {
        "timestamp": list(ts),
        "open": ["1.0"] * n,
        "high": ["2.0"] * n,
        "low": ["0.5"] * n,
        "close": ["1.5"] * n,
        "volume": ["10"] * n,
    }
    data.update(extra)
    return pd.DataFrame(data)


def _parse(frame: pd.DataFrame, timeframe: str = "1h", **kw: object) -> pd.DataFrame:
    result = parse_table(frame, origin="test", timeframe=timeframe, **kw)  # type: ignore[arg-type]
    assert result.rejects == [], [r.describe() for r in result.rejects]
    return result.bars


def _rejects(result: object) -> list[tuple[int, str, str]]:
    return [(r.row, r.field, r.rule) for r in result.rejects]  # type: ignore[attr-defined]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# --- timestamp formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (["2024-01-02T10:00:00+02:00", "2024-01-02T11:00:00+02:00"], ["08:00", "09:00"]),
        (["2024-01-02T10:00:00-05:00", "2024-01-02T11:00:00-05:00"], ["15:00", "16:00"]),
        (["2024-01-02T10:00:00Z", "2024-01-02T11:00:00Z"], ["10:00", "11:00"]),
        (["2024-01-02T10:00:00", "2024-01-02T11:00:00"], ["10:00", "11:00"]),
        (["2024-01-02 10:00:00", "2024-01-02 11:00:00"], ["10:00", "11:00"]),
        (["2024-01-02 10:00", "2024-01-02 11:00"], ["10:00", "11:00"]),
    ],
    ids=["offset+02", "offset-05", "zulu", "iso-T-naive", "iso-space-naive", "iso-no-seconds"],
)
def test_iso_timestamps_with_and_without_offset_become_utc(
    stamps: list[str], expected: list[str]
) -> None:
    bars = _parse(_frame(stamps))
    assert bars["ts"].tolist() == _utc(*(f"2024-01-02 {hm}" for hm in expected))
    assert str(bars["ts"].dt.tz) == UTC


def test_iso_timestamps_with_mixed_offsets_across_dst_become_utc() -> None:
    # Regression: scoring formats with utc=False used to reject every row of such a file.
    bars = _parse(_frame(["2024-03-08T10:00:00-05:00", "2024-03-11T10:00:00-04:00"]))
    assert bars["ts"].tolist() == _utc("2024-03-08 15:00", "2024-03-11 14:00")


def test_offset_and_naive_rows_mixed_each_converted() -> None:
    bars = _parse(_frame(["2024-07-02T10:00:00+02:00", "2024-07-02 10:00"]), tz="America/New_York")
    assert bars["ts"].tolist() == _utc("2024-07-02 08:00", "2024-07-02 14:00")


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (["2024-01-02T10:00:00.000Z", "2024-01-02T11:00:00.000Z"], ["10:00", "11:00"]),
        (["2024-01-02T10:00:00+0200", "2024-01-02T11:00:00+0200"], ["08:00", "09:00"]),
        (["2024-01-02 10:00:00 +02:00", "2024-01-02 11:00:00 +02:00"], ["08:00", "09:00"]),
    ],
    ids=["millis-zulu", "offset-no-colon", "space-before-offset"],
)
def test_iso_offset_variants(stamps: list[str], expected: list[str]) -> None:
    bars = _parse(_frame(stamps))
    assert bars["ts"].tolist() == _utc(*(f"2024-01-02 {hm}" for hm in expected))


@pytest.mark.parametrize(
    ("stamps", "timeframe", "expected"),
    [
        (["1/2/2024", "1/3/2024", "1/4/2024"], "1day", ["2024-01-02", "2024-01-03", "2024-01-04"]),
        (["12/29/2023", "1/2/2024"], "1day", ["2023-12-29", "2024-01-02"]),
        (["1/2/2024 9:00", "1/2/2024 10:00"], "1h", ["2024-01-02 09:00", "2024-01-02 10:00"]),
        (["3/5/2024 23:00", "3/6/2024 00:00"], "1h", ["2024-03-05 23:00", "2024-03-06 00:00"]),
        (
            ["1/2/2024 09:00:00", "1/2/2024 10:00:00"],
            "1h",
            ["2024-01-02 09:00", "2024-01-02 10:00"],
        ),
    ],
    ids=["mdy", "mdy-year-end", "mdy-hm", "mdy-hm-midnight", "mdy-hms"],
)
def test_us_month_day_year(stamps: list[str], timeframe: str, expected: list[str]) -> None:
    got = _parse(_frame(stamps), timeframe, date_format="mdy")
    assert got["ts"].tolist() == _utc(*expected)


@pytest.mark.parametrize(
    ("stamps", "timeframe", "expected"),
    [
        (["12/29/2023", "1/2/2024"], "1day", ["2023-12-29", "2024-01-02"]),
        (["1/2/2024 9:00", "1/13/2024 10:00"], "1h", ["2024-01-02 09:00", "2024-01-13 10:00"]),
        (["1.2.2024", "1.13.2024"], "1day", ["2024-01-02", "2024-01-13"]),
        (["1-2-2024", "1-13-2024"], "1day", ["2024-01-02", "2024-01-13"]),
    ],
    ids=["slash", "slash-hm", "dot", "dash"],
)
def test_month_day_year_detected_when_a_second_number_exceeds_12(
    stamps: list[str], timeframe: str, expected: list[str]
) -> None:
    assert _parse(_frame(stamps), timeframe)["ts"].tolist() == _utc(*expected)


@pytest.mark.parametrize(
    ("stamps", "timeframe", "expected"),
    [
        (["13/1/2024", "14/1/2024"], "1day", ["2024-01-13", "2024-01-14"]),
        (["2/1/2024", "3/1/2024", "13/1/2024"], "1day", ["2024-01-02", "2024-01-03", "2024-01-13"]),
        (["05/02/2024 10:00", "25/02/2024 10:00"], "1h", ["2024-02-05 10:00", "2024-02-25 10:00"]),
    ],
    ids=["all-days-over-12", "ambiguous-then-13", "dmy-hm"],
)
def test_day_month_year_detected_when_a_day_exceeds_12(
    stamps: list[str], timeframe: str, expected: list[str]
) -> None:
    assert _parse(_frame(stamps), timeframe)["ts"].tolist() == _utc(*expected)


# --- the order of day and month (issue 16) --------------------------------------------------


def test_a_day_month_file_is_never_read_month_first_from_its_first_rows() -> None:
    """Issue 16: the order came from the first 2,000 rows, so a D/M/Y minute file (its first
    days all 12 or less) was read M/D/Y: 15,840 of 28,800 bars moved, the rest rejected."""
    true = pd.date_range("2024-04-01", periods=60 * 24 * 20, freq="min", tz=UTC)
    bars = _parse(_frame(list(true.strftime("%d/%m/%Y %H:%M"))), "1min")
    assert bars["ts"].tolist() == list(true)


@pytest.mark.parametrize(
    ("stamps", "row", "could_be"),
    [
        (["03/04/2024 10:00", "03/04/2024 11:00"], 2, "could be 3 April or March 4"),
        (["1/1/2024", "2/1/2024", "3/1/2024"], 3, "could be 2 January or February 1"),
        (["01.02.2024 10:00", "01.02.2024 11:00"], 2, "could be 1 February or January 2"),
    ],
    ids=["slash", "after-a-same-either-way-row", "dot"],
)
def test_an_undecidable_day_month_order_refuses_the_file_naming_a_row(
    stamps: list[str], row: int, could_be: str
) -> None:
    with pytest.raises(BadDataError) as info:
        parse_table(_frame(stamps), origin="f.csv", timeframe="1h", row_offset=2)
    err = info.value
    assert err.code == "DATA_FILE_DATE_AMBIGUOUS"
    assert err.message.startswith(f"f.csv: dates like {stamps[row - 2]!r} (row {row}) {could_be}")
    assert "pass --date-format dmy or mdy" in err.message


def test_dates_the_same_either_way_need_no_order() -> None:
    assert _parse(_frame(["1/1/2024", "2/2/2024"]), "1day")["ts"].tolist() == _utc(
        "2024-01-01", "2024-02-02"
    )


def test_rows_disagreeing_on_the_order_refuse_the_file_naming_both() -> None:
    stamps = ["13/04/2024 10:00", "14/04/2024 10:00", "04/15/2024 10:00", "04/16/2024 10:00"]
    with pytest.raises(BadDataError) as info:
        parse_table(_frame(stamps), origin="f.csv", timeframe="1h", row_offset=2)
    assert info.value.code == "DATA_FILE_DATE_CONFLICT"
    assert "2 only read as day/month (first row 2: '13/04/2024 10:00'), 2 only as month/day " \
        "(first row 4: '04/15/2024 10:00')" in info.value.message  # fmt: skip


@pytest.mark.parametrize(
    ("date_format", "good"),
    [("dmy", "2024-04-03 10:00"), ("mdy", "2024-03-04 10:00"),
     ("%d/%m/%Y %H:%M", "2024-04-03 10:00")],
)  # fmt: skip
def test_a_date_format_reads_every_row_and_rejects_those_not_in_it(
    date_format: str, good: str
) -> None:
    stamps = ["03/04/2024 10:00", "13/04/2024 10:00", "04/13/2024 10:00", "2024-04-03 10:00"]
    result = parse_table(_frame(stamps), origin="t", timeframe="1h", date_format=date_format,
                         row_offset=2)  # fmt: skip
    assert result.bars["ts"].tolist()[0] == _utc(good)[0]
    rule = f"timestamp not in --date-format {date_format}"
    bad = [3, 5] if date_format == "mdy" else [4, 5]
    assert _rejects(result) == [(r, "ts", rule) for r in bad]


def test_iso_and_ymd_formats_take_year_first_dates_only() -> None:
    stamps = ["2024-04-03 10:00", "2024/04/03 11:00", "03/04/2024 12:00", "2024.04.03 13:00"]
    for date_format in ("iso", "ymd"):
        result = parse_table(_frame(stamps), origin="t", timeframe="1h", date_format=date_format)
        assert [r.row for r in result.rejects] == [3]
        assert result.bars["ts"].tolist() == _utc("2024-04-03 10:00", "2024-04-03 11:00",
                                                  "2024-04-03 13:00")  # fmt: skip


def test_a_date_format_is_not_taken_for_epoch_numbers() -> None:
    result = parse_table(_frame(["1704189600"]), origin="t", timeframe="1h", date_format="iso")
    assert [r.rule for r in result.rejects] == ["timestamp not in --date-format iso"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("dym", "is not one of auto, dmy, mdy, ymd, iso or a strftime pattern"),
     ("%H:%M", "does not hold a year, a month and a day"),
     ("%d/%m", "does not hold a year"),
     ("%Q", "is not a usable strftime pattern")],
)  # fmt: skip
def test_a_bad_date_format_is_refused_naming_what_is_accepted(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"date|strftime|pattern") as info:
        check_date_format(value)
    assert fragment in str(info.value)
    assert check_date_format("DMY") == "dmy"


@pytest.mark.parametrize(
    "pattern", ["%Y-%m-%d %H:%M:%S%z", "%d/%m/%Y %H:%M %z", "%Y-%m-%d %H:%M:%S %Z"]
)
def test_a_date_format_with_a_zone_is_accepted(pattern: str) -> None:
    assert check_date_format(pattern) == pattern


def test_rows_read_by_a_zoned_date_format_are_instants() -> None:
    fmt = "%Y-%m-%d %H:%M:%S%z"
    stamps = ["2024-01-02 03:00:00+0200", "2024-01-02 04:00:00-05:00", "2024-01-02 06:00:00Z"]
    bars = _parse(_frame(stamps), date_format=fmt, tz="America/New_York")
    assert bars["ts"].tolist() == _utc("2024-01-02 01:00", "2024-01-02 06:00", "2024-01-02 09:00")
    result = parse_table(_frame(["2024-01-02 05:00:00"]), origin="t", timeframe="1h",
                         date_format=fmt)  # fmt: skip
    assert [r.rule for r in result.rejects] == [f"timestamp not in --date-format {fmt}"]
    # A daily bar is labelled by the date written on it, whatever the offset.
    daily = _parse(_frame(["2024-01-02 23:00:00-05:00"]), "1day", date_format=fmt)
    assert daily["ts"].tolist() == _utc("2024-01-02")
    named = _parse(_frame(["2024-01-02 03:00:00 UTC"]), date_format="%Y-%m-%d %H:%M:%S %Z")
    assert named["ts"].tolist() == _utc("2024-01-02 03:00")


def test_a_wall_clock_time_dst_skips_or_repeats_is_rejected_as_such() -> None:
    stamps = ["2024-11-03 00:30", "2024-11-03 01:30", "2024-03-10 02:30", "garbage"]
    result = parse_table(_frame(stamps), origin="t", timeframe="30min", tz="America/New_York")
    assert [(r.row, r.rule) for r in result.rejects] == [
        (2, "ambiguous local time (DST fall-back) in America/New_York"),
        (3, "nonexistent local time (DST spring-forward) in America/New_York"),
        (4, "unparsable timestamp"),
    ]
    assert result.bars["ts"].tolist() == _utc("2024-11-03 04:30")


def test_mt4_dotted_date_with_time() -> None:
    bars = _parse(_frame(["2024.01.02 23:00", "2024.01.03 00:00"]))
    assert bars["ts"].tolist() == _utc("2024-01-02 23:00", "2024-01-03 00:00")


def test_split_date_and_time_columns() -> None:
    frame = pd.DataFrame(
        {
            "Date": ["2024.01.02", "2024.01.02", "2024.01.03"],
            "Time": ["22:00", "23:00", "00:00"],
            "Open": ["1.1", "1.2", "1.3"],
            "High": ["1.5", "1.5", "1.5"],
            "Low": ["1.0", "1.0", "1.0"],
            "Close": ["1.2", "1.3", "1.4"],
            "Volume": ["5", "6", "7"],
        }
    )
    bars = _parse(frame)
    assert bars["ts"].tolist() == _utc("2024-01-02 22:00", "2024-01-02 23:00", "2024-01-03 00:00")
    assert bars["open"].tolist() == [1.1, 1.2, 1.3]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1704189600", "1704193200"], ["2024-01-02 10:00", "2024-01-02 11:00"]),
        (["1704189600000", "1704193200000"], ["2024-01-02 10:00", "2024-01-02 11:00"]),
        ([1704189600, 1704193200], ["2024-01-02 10:00", "2024-01-02 11:00"]),
        ([1704189600000, 1704193200000], ["2024-01-02 10:00", "2024-01-02 11:00"]),
    ],
    ids=["seconds-text", "millis-text", "seconds-int", "millis-int"],
)
def test_epoch_seconds_and_milliseconds(values: list[object], expected: list[str]) -> None:
    assert _parse(_frame(values))["ts"].tolist() == _utc(*expected)


def test_one_millisecond_value_among_seconds_moves_no_other_row() -> None:
    """Issue 16: the unit used to come from the largest value, so one value in milliseconds
    turned every row in seconds into a 1970 date (exit 0). Each row's magnitude decides."""
    seconds = [1704189600 + 3600 * i for i in range(200)]
    values = [str(v) for v in seconds]
    values[50] = str(seconds[50] * 1000)
    got = _parse(_frame(values))["ts"]
    assert got.tolist() == [pd.Timestamp(v, unit="s", tz=UTC) for v in seconds]


def test_a_row_dated_beyond_now_is_rejected_with_its_row_number() -> None:
    """Issue 16: one row dated 2200 set the watermark to 2200; it is now rejected."""
    values = ["2024-01-02T10:00:00Z", "2200-01-01T00:00:00Z", "2024-01-02T11:00:00Z",
              "2024-01-02T12:00:00Z"]  # fmt: skip
    now = pd.Timestamp("2024-01-02T11:30:00Z")
    result = parse_table(_frame(values), origin="t", timeframe="1h", now=now)
    assert _rejects(result) == [(2, "ts", "timestamp in the future")]
    assert result.bars["ts"].tolist() == _utc("2024-01-02 10:00", "2024-01-02 11:00",
                                              "2024-01-02 12:00")  # fmt: skip
    # The bar that starts within one bar of now is not from the future: it is forming.


def test_one_bad_epoch_value_rejects_only_that_row() -> None:
    # Regression: a >99%-numeric threshold used to send the whole column to text parsing.
    values = [str(1704189600 + 3600 * i) for i in range(20)]
    values[5] = "oops"
    result = parse_table(_frame(values), origin="t", timeframe="1h")
    assert _rejects(result) == [(6, "ts", "unparsable timestamp")]
    assert len(result.bars) == 19


# --- column names ------------------------------------------------------------------------


def test_columns_in_any_case_with_spaces_and_adj_close_ignored() -> None:
    frame = pd.DataFrame(
        {
            "Date": ["2024-01-02", "2024-01-03"],
            "OPEN": ["10", "11"],
            "High": ["12", "13"],
            " Low": ["9", "10"],
            " Close ": ["11", "12"],
            "Adj Close": ["5.5", "6"],
            "VOLUME ": ["100", "200"],
        }
    )
    bars = _parse(frame, "1day")
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars["ts"].tolist() == _utc("2024-01-02", "2024-01-03")
    assert bars["open"].tolist() == [10.0, 11.0]
    assert bars["close"].tolist() == [11.0, 12.0]  # Close, not Adj Close
    assert bars["volume"].tolist() == [100.0, 200.0]


def test_adj_close_before_close_is_still_ignored() -> None:
    frame = _frame(["2024-01-02 10:00"]).rename(columns={"close": "Close"})
    frame.insert(4, "Adj Close", ["0.9"])
    assert _parse(frame)["close"].tolist() == [1.5]


def test_leading_unnamed_column_holding_the_timestamps() -> None:
    # pandas' `df.to_csv()` of a DatetimeIndex: the header of the index column is empty.
    frame = _frame(["2024-01-02 10:00", "2024-01-02 11:00"]).rename(columns={"timestamp": ""})
    bars = _parse(frame)
    assert bars["ts"].tolist() == _utc("2024-01-02 10:00", "2024-01-02 11:00")


def test_leading_unnamed_row_number_column_is_ignored() -> None:
    # Regression: the RangeIndex column of `df.to_csv()` used to be read as epoch seconds
    # (every daily bar on 1970-01-01, with no reject).
    frame = pd.DataFrame(
        {
            "Unnamed: 0": ["0", "1", "2"],
            "Date": ["2024-01-02", "2024-01-03", "2024-01-04"],
            "Open": ["1"] * 3,
            "High": ["2"] * 3,
            "Low": ["0.5"] * 3,
            "Close": ["1.5"] * 3,
        }
    )
    bars = _parse(frame, "1day")
    assert bars["ts"].tolist() == _utc("2024-01-02", "2024-01-03", "2024-01-04")


def test_file_without_volume_gets_volume_zero() -> None:
    frame = _frame(["2024-01-02 10:00", "2024-01-02 11:00"]).drop(columns="volume")
    bars = _parse(frame)
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars["volume"].tolist() == [0.0, 0.0]


def test_missing_column_is_a_schema_error_naming_missing_and_found() -> None:
    frame = _frame(["2024-01-02 10:00"]).drop(columns="low")
    with pytest.raises(FatalError) as info:
        parse_table(frame, origin="prices.csv", timeframe="1h")
    err = info.value
    assert err.code == "DATA_FILE_SCHEMA"
    assert "low" in err.message.split(";")[0]
    assert "prices.csv" in err.message
    for found in ("timestamp", "open", "high", "close", "volume"):
        assert f"'{found}'" in err.message
    assert err.details["missing"] == ["low"]


def test_missing_timestamp_column_is_a_schema_error() -> None:
    frame = _frame(["2024-01-02 10:00"]).rename(columns={"timestamp": "when"})
    with pytest.raises(FatalError) as info:
        parse_table(frame, origin="x", timeframe="1h")
    assert info.value.code == "DATA_FILE_SCHEMA"
    assert info.value.details["missing"] == ["ts"]
    assert "'when'" in info.value.message


def test_unknown_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        parse_table(_frame(["2024-01-02 10:00"]), origin="x", timeframe="2h")


# --- time zones ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2024-01-02 10:00", "2024-01-02 15:00"),  # EST, UTC-5
        ("2024-07-02 10:00", "2024-07-02 14:00"),  # EDT, UTC-4
        ("2024-03-10 03:00", "2024-03-10 07:00"),  # first hour after spring-forward
    ],
)
def test_naive_local_timestamps_converted_from_tz(local: str, utc: str) -> None:
    bars = _parse(_frame([local]), tz="America/New_York")
    assert bars["ts"].tolist() == _utc(utc)


def test_offset_timestamps_ignore_tz_argument() -> None:
    bars = _parse(_frame(["2024-01-02T10:00:00+02:00"]), tz="America/New_York")
    assert bars["ts"].tolist() == _utc("2024-01-02 08:00")


def test_dst_ambiguous_local_time_is_rejected() -> None:
    # 2024-11-03 01:00 happens twice in New York (EDT, then EST): no guessing.
    frame = _frame(["2024-11-03 00:00", "2024-11-03 01:00", "2024-11-03 02:00"])
    result = parse_table(frame, origin="t", timeframe="1h", tz="America/New_York")
    assert _rejects(result) == [
        (2, "ts", "ambiguous local time (DST fall-back) in America/New_York")
    ]
    assert result.bars["ts"].tolist() == _utc("2024-11-03 04:00", "2024-11-03 07:00")


def test_dst_nonexistent_local_time_is_rejected() -> None:
    # 2024-03-10 02:30 does not exist in New York (clocks jump 02:00 -> 03:00).
    frame = _frame(["2024-03-10 01:00", "2024-03-10 02:00", "2024-03-10 03:00"])
    result = parse_table(frame, origin="t", timeframe="1h", tz="America/New_York")
    assert _rejects(result) == [
        (2, "ts", "nonexistent local time (DST spring-forward) in America/New_York")
    ]
    assert result.rejects[0].raw == "2024-03-10 02:00"
    assert result.bars["ts"].tolist() == _utc("2024-03-10 06:00", "2024-03-10 07:00")


# --- reject rules --------------------------------------------------------------------------

_GOOD_TS = [f"2024-01-02 {h:02d}:00" for h in range(8)]


@pytest.mark.parametrize(
    ("column", "value", "field", "rule"),
    [
        ("timestamp", "not a date", "ts", "unparsable timestamp"),
        ("timestamp", "2024-13-45 10:00", "ts", "unparsable timestamp"),
        ("timestamp", "", "ts", "unparsable timestamp"),
        ("timestamp", "2024-01-02 03:30", "ts", "timestamp off the 1h grid"),
        ("timestamp", "2024-01-02 03:00:01", "ts", "timestamp off the 1h grid"),
        ("open", "nan", "open", "not a finite number"),
        ("high", "inf", "high", "not a finite number"),
        ("low", "-inf", "low", "not a finite number"),
        ("close", "", "close", "not a finite number"),
        ("close", "1.2x", "close", "not a finite number"),
        ("open", "-1", "open", "non-positive price"),
        ("low", "0", "low", "non-positive price"),
        ("close", "0.0", "close", "non-positive price"),
        ("high", "0.4", "high", "high < low"),
        ("open", "2.5", "open", "open outside [low, high]"),
        ("open", "0.4", "open", "open outside [low, high]"),
        ("close", "2.0001", "close", "close outside [low, high]"),
        ("close", "0.49", "close", "close outside [low, high]"),
        ("volume", "-1", "volume", "volume negative or not finite"),
        ("volume", "inf", "volume", "volume negative or not finite"),
        ("volume", "lots", "volume", "volume negative or not finite"),
    ],
)
@pytest.mark.parametrize("row_offset", [1, 2, 10])
def test_each_reject_rule_names_row_field_and_rule(
    column: str, value: str, field: str, rule: str, row_offset: int
) -> None:
    frame = _frame(list(_GOOD_TS))
    bad = 3
    frame.loc[bad, column] = value
    result = parse_table(frame, origin="f.csv", timeframe="1h", row_offset=row_offset)
    assert _rejects(result) == [(bad + row_offset, field, rule)]
    rej = result.rejects[0]
    assert rej.origin == "f.csv"
    assert rej.raw == value
    assert "f.csv" in rej.describe() and f"row {bad + row_offset}" in rej.describe()
    kept = [ts for i, ts in enumerate(_GOOD_TS) if i != bad]
    assert result.bars["ts"].tolist() == _utc(*kept)
    assert result.rows_read == len(_GOOD_TS)


def test_several_bad_rows_each_reported_once_and_good_rows_kept() -> None:
    frame = _frame(list(_GOOD_TS))
    frame.loc[1, "timestamp"] = "junk"
    frame.loc[2, ["open", "close"]] = ["-1", "nan"]  # breaks two rules: first one reported
    frame.loc[5, "volume"] = "-3"
    frame.loc[6, ["high", "low"]] = ["1", "3"]
    result = parse_table(frame, origin="t", timeframe="1h")
    assert _rejects(result) == [
        (2, "ts", "unparsable timestamp"),
        (3, "close", "not a finite number"),
        (6, "volume", "volume negative or not finite"),
        (7, "high", "high < low"),
    ]
    assert result.bars["ts"].tolist() == _utc(*(_GOOD_TS[i] for i in (0, 3, 4, 7)))


def test_blank_rows_are_skipped_but_still_counted() -> None:
    frame = _frame(["2024-01-02 10:00", "", "2024-01-02 11:00", "2024-01-02 12:00"])
    frame.loc[1, ["open", "high", "low", "close", "volume"]] = ["", " ", "", "", ""]
    frame.loc[3, "close"] = "-1"
    result = parse_table(frame, origin="t", timeframe="1h", row_offset=2)
    assert _rejects(result) == [(5, "close", "non-positive price")]
    assert result.bars["ts"].tolist() == _utc("2024-01-02 10:00", "2024-01-02 11:00")


def test_price_abs_tolerance_allows_open_close_just_outside() -> None:
    frame = _frame(["2024-01-02 10:00", "2024-01-02 11:00"])
    frame.loc[0, "open"] = "2.005"
    frame.loc[1, "close"] = "0.495"
    strict = parse_table(frame, origin="t", timeframe="1h")
    assert [r.rule for r in strict.rejects] == [
        "open outside [low, high]",
        "close outside [low, high]",
    ]
    loose = parse_table(frame, origin="t", timeframe="1h", price_abs_tolerance=0.01)
    assert loose.rejects == []
    assert loose.bars["open"].tolist() == [2.005, 1.0]


def test_unsorted_input_comes_out_sorted_with_rejects_by_row() -> None:
    frame = _frame(["2024-01-02 12:00", "bad", "2024-01-02 10:00", "2024-01-02 11:00"])
    frame.loc[3, "close"] = "9"
    result = parse_table(frame, origin="t", timeframe="1h")
    assert [r.row for r in result.rejects] == [2, 4]
    assert result.bars["ts"].tolist() == _utc("2024-01-02 10:00", "2024-01-02 12:00")
    assert result.bars["ts"].is_monotonic_increasing


def test_values_are_parsed_exactly() -> None:
    frame = _frame(["2024-01-02 10:00"])
    frame.loc[0, ["open", "high", "low", "close", "volume"]] = [
        " 1.08765",
        "1.09001 ",
        "1.08500",
        "1.0899",
        "1234.5",
    ]
    bars = _parse(frame)
    row = bars.iloc[0]
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"]) == (
        1.08765,
        1.09001,
        1.085,
        1.0899,
        1234.5,
    )
    assert all(bars[c].dtype == np.float64 for c in ("open", "high", "low", "close", "volume"))


# --- daily bars ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "tz"),
    [
        ("2024-01-02", UTC),
        ("2024-01-02 00:00:00", UTC),
        ("2024-01-02 09:30", UTC),
        ("2024-01-02 16:00:00", UTC),
        ("2024-01-02 23:59:59", UTC),
        ("2024-01-02T16:00:00-05:00", UTC),
        ("2024-01-02 16:00", "America/New_York"),  # 21:00 UTC
        ("2024-01-02 22:00", "America/New_York"),  # 03:00 UTC on the 3rd
        ("2024-01-02T22:00:00-05:00", "America/New_York"),
        ("1704229200", UTC),  # 2024-01-02 21:00 UTC as epoch seconds
    ],
)
def test_daily_bars_labelled_by_trading_date(stamp: str, tz: str) -> None:
    bars = _parse(_frame([stamp]), "1day", tz=tz)
    assert bars["ts"].tolist() == _utc("2024-01-02")


def test_daily_bar_with_positive_offset_keeps_its_written_date() -> None:
    # Regression: the stamp used to be converted to UTC first (every bar one day early).
    bars = _parse(_frame(["2024-01-02T00:00:00+09:00", "2024-01-03T00:00:00+09:00"]), "1day")
    assert bars["ts"].tolist() == _utc("2024-01-02", "2024-01-03")


def test_daily_bars_from_a_tz_aware_datetime_column_keep_their_written_date(
    tmp_path: Path,
) -> None:
    stamps = pd.DatetimeIndex(["2024-01-02", "2024-01-03"]).tz_localize("Asia/Tokyo")
    frame = pd.DataFrame(
        {
            "ts": stamps,
            "open": [1.0, 1.0],
            "high": [2.0, 2.0],
            "low": [0.5, 0.5],
            "close": [1.5, 1.5],
        }
    )
    as_text = frame.assign(ts=[t.isoformat() for t in stamps])
    assert _parse(as_text, "1day")["ts"].tolist() == _utc("2024-01-02", "2024-01-03")
    path = tmp_path / "tokyo.parquet"
    frame.to_parquet(path, index=False)
    bars = FileProvider(path).read("1day").bars
    assert bars["ts"].tolist() == _utc("2024-01-02", "2024-01-03")


def test_intraday_stamp_on_daily_timeframe_is_not_rejected_but_other_timeframes_are() -> None:
    frame = _frame(["2024-01-02 15:00", "2024-01-03 15:00"])
    assert len(_parse(frame, "1day")) == 2
    result = parse_table(frame, origin="t", timeframe="4h")
    assert [r.rule for r in result.rejects] == ["timestamp off the 4h grid"] * 2


# --- files through FileProvider ---------------------------------------------------------------

_HEADER = "Date,Open,High,Low,Close,Volume\n"


def _rows(n: int, start: str = "2024-01-02 00:00", sep: str = ",") -> str:
    stamps = pd.date_range(start, periods=n, freq="h")
    return "".join(
        sep.join([t.strftime("%Y-%m-%d %H:%M"), "1.0", "2.0", "0.5", "1.5", "10"]) + "\n"
        for t in stamps
    )


def test_semicolon_delimited_csv(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", _HEADER.replace(",", ";") + _rows(3, sep=";"))
    result = FileProvider(path).read("1h")
    assert result.rejects == []
    assert result.bars["ts"].tolist() == _utc(
        "2024-01-02 00:00", "2024-01-02 01:00", "2024-01-02 02:00"
    )
    assert result.bars["close"].tolist() == [1.5] * 3


def test_tab_delimited_csv(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.txt", _HEADER.replace(",", "\t") + _rows(2, sep="\t"))
    assert len(FileProvider(path).read("1h").bars) == 2


def test_utf8_bom_does_not_hide_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (_HEADER + _rows(2)).encode("utf-8"))
    result = FileProvider(path).read("1h")
    assert result.rejects == []
    assert result.bars["ts"].tolist() == _utc("2024-01-02 00:00", "2024-01-02 01:00")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_reject_rows_match_editor_lines(tmp_path: Path, newline: str) -> None:
    lines = (_HEADER + _rows(6)).splitlines()
    lines[3] = lines[3].replace(",0.5,", ",-0.5,")  # editor line 4
    lines[6] = lines[6].replace("2024-01-02 05:00", "2024-01-02 05:17")  # editor line 7
    path = _write(tmp_path / "lines.csv", newline.join(lines) + newline)
    result = FileProvider(path).read("1h")
    assert [(r.row, r.field) for r in result.rejects] == [(4, "low"), (7, "ts")]
    assert len(result.bars) == 4
    for r in result.rejects:
        assert str(path) in r.origin


def test_csv_reject_rows_match_editor_lines_after_a_blank_line(tmp_path: Path) -> None:
    # Regression: pandas used to skip blank lines, shifting every later row number.
    lines = (_HEADER + _rows(4)).splitlines()
    lines.insert(2, "")  # a blank line 3
    lines[4] = lines[4].replace(",1.5,10", ",-1,10")  # editor line 5: negative close
    path = _write(tmp_path / "blank.csv", "\n".join(lines) + "\n")
    result = FileProvider(path).read("1h")
    assert [r.row for r in result.rejects] == [5]


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.csv", "")
    with pytest.raises(FatalError) as info:
        FileProvider(path).read("1h")
    assert info.value.code == "DATA_FILE_EMPTY"
    assert str(path) in info.value.message


def test_header_only_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "header.csv", _HEADER)
    with pytest.raises(FatalError) as info:
        FileProvider(path).read("1h")
    assert info.value.code == "DATA_FILE_EMPTY"
    assert "header only" in info.value.message


def test_ragged_csv_names_the_line(tmp_path: Path) -> None:
    lines = (_HEADER + _rows(4)).splitlines()
    lines[3] += ",extra,fields"  # editor line 4
    path = _write(tmp_path / "ragged.csv", "\n".join(lines) + "\n")
    with pytest.raises(FatalError) as info:
        FileProvider(path).read("1h")
    assert info.value.code == "DATA_FILE_MALFORMED"
    assert "line 4" in info.value.message
    assert str(path) in info.value.message


def test_non_utf8_bytes_are_malformed(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        (_HEADER.strip() + ",Note\n").encode() + _rows(1).strip().encode() + b",caf\xe9\n"
    )
    with pytest.raises(FatalError) as info:
        FileProvider(path).read("1h")
    assert info.value.code == "DATA_FILE_MALFORMED"
    assert "UTF-8" in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(FatalError) as info:
        FileProvider(path).read("1h")
    assert info.value.code == "DATA_FILE_NOT_FOUND"
    assert info.value.details["path"] == str(path)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(FatalError) as info:
        FileProvider(folder).read("1h")
    assert info.value.code == "DATA_FILE_UNREADABLE"
    assert "folder" in info.value.message


@pytest.mark.parametrize("tz_aware", [True, False])
def test_parquet_with_a_datetime_column(tmp_path: Path, tz_aware: bool) -> None:
    stamps = pd.date_range("2024-01-02 10:00", periods=4, freq="h", tz=UTC if tz_aware else None)
    frame = pd.DataFrame(
        {
            "datetime": stamps,
            "open": [1.0, 1.1, 1.2, 1.3],
            "high": [2.0, 2.0, 0.1, 2.0],  # row 3: high < low
            "low": [0.5, 0.5, 0.5, 0.5],
            "close": [1.5, 1.6, 1.7, 1.8],
            "volume": [1, 2, 3, 4],
        }
    )
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path, index=False)
    result = FileProvider(path).read("1h")
    assert _rejects(result) == [(3, "high", "high < low")]  # Parquet rows count from 1
    assert result.bars["ts"].tolist() == _utc(
        "2024-01-02 10:00", "2024-01-02 11:00", "2024-01-02 13:00"
    )
    assert result.bars["open"].tolist() == [1.0, 1.1, 1.3]
    assert result.source == "file:bars.parquet"


def test_parquet_naive_datetimes_taken_in_provider_tz(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-07-02 10:00"]),
            "open": [1.0],
            "high": [2.0],
            "low": [0.5],
            "close": [1.5],
        }
    )
    path = tmp_path / "ny.parquet"
    frame.to_parquet(path, index=False)
    bars = FileProvider(path, tz="America/New_York").read("1h").bars
    assert bars["ts"].tolist() == _utc("2024-07-02 14:00")


def test_corrupt_parquet_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    good = tmp_path / "good.parquet"
    _frame(["2024-01-02 10:00"]).to_parquet(good, index=False)
    path.write_bytes(good.read_bytes()[:-40])  # truncated footer
    with pytest.raises(FatalError) as info:
        FileProvider(path).read("1h")
    assert info.value.code == "DATA_FILE_MALFORMED"
    assert str(path) in info.value.message


def test_fetch_keeps_only_the_requested_window(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.csv", _HEADER + _rows(6))
    result = FileProvider(path).fetch(
        "EUR/USD",
        "1h",
        pd.Timestamp("2024-01-02 02:00", tz=UTC).to_pydatetime(),
        pd.Timestamp("2024-01-02 04:00", tz=UTC).to_pydatetime(),
    )
    assert result.bars["ts"].tolist() == _utc(
        "2024-01-02 02:00", "2024-01-02 03:00", "2024-01-02 04:00"
    )


# --- real third-party files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "timeframe", "rows", "first", "last"),
    [
        ("EURUSD.csv", "1h", 5000, "2017-04-19 09:00", "2018-02-07 15:00"),
        ("GOOG.csv", "1day", 2148, "2004-08-19", "2013-03-01"),
    ],
)
def test_real_third_party_files(
    name: str, timeframe: str, rows: int, first: str, last: str
) -> None:
    path = third_party_csv(name)
    result = FileProvider(path).read(timeframe)
    assert result.rejects == []
    assert result.rows_read == rows
    bars = result.bars
    assert len(bars) == rows
    assert bars["ts"].iloc[0] == pd.Timestamp(first, tz=UTC)
    assert bars["ts"].iloc[-1] == pd.Timestamp(last, tz=UTC)
    assert bars["ts"].is_unique and bars["ts"].is_monotonic_increasing
    assert (bars["high"] >= bars["low"]).all()
    # Spot-check the first line's values against the file text.
    first_line = path.read_text(encoding="utf-8").splitlines()[1].split(",")
    assert bars.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [
        float(x) for x in first_line[1:]
    ]
