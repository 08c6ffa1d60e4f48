"""The CSV/Parquet reader under hostile files: any bytes, any cells, any column types, a damaged
Parquet file end in bars that keep every invariant or in one of the project's own errors (its
message naming the file) — never another exception."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.data import FileProvider
from mlcore.errors import MlcoreError

HEADER = ["ts", "open", "high", "low", "close", "volume"]
NOW_NS = datetime.now(UTC).timestamp() * 1e9

# Cells as users' files and attackers have them: good values, near misses and absurd ones.
_GOOD_TS = st.datetimes(datetime(1990, 1, 1), datetime(2030, 1, 1)).map(  # noqa: DTZ001 - wall times
    lambda d: d.strftime(
        "%Y-%m-%d %H:00" if d.minute % 3 == 0 else "%d/%m/%Y %H:00" if d.minute % 3 else "%s"
    )
)
_ODD = st.sampled_from(
    ["", " ", "NaN", "nan", "inf", "-inf", "1e308", "1e309", "-1", "0", "²", "١٢٣", "1_000",
     "9" * 400, "2200-01-01", "0000-00-00", "13/13/2024", "1970-01-01", "true", "null", '"',
     "\x00", "\u202e", "\x1b[31m", "1,5", "1.5.5", "+", "1e-320", "99999999999999999999"]
)  # fmt: skip
_PRICE = st.one_of(
    st.floats(0.01, 1e6, allow_nan=False).map(repr), st.integers(-10, 10**6).map(str), _ODD
)
_CELL_TS = st.one_of(_GOOD_TS, _ODD, st.text(max_size=30))


def _read(path: Path) -> pd.DataFrame | None:
    """The bars read from ``path``, or None after one of the project's own errors."""
    try:
        return FileProvider(path).read("1h").bars
    except MlcoreError as exc:
        message = str(exc)
        named = str(path) in message or exc.details.get("path") == str(path)
    assert named, message
    return None


def _check_invariants(bars: pd.DataFrame | None) -> None:
    if bars is None or bars.empty:
        return
    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype=float)
    assert np.isfinite(prices).all() and (prices > 0).all()
    assert (bars["high"] >= bars[["open", "close", "low"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    ts = bars["ts"]
    assert ts.is_monotonic_increasing and ts.is_unique
    assert str(ts.dt.tz) == "UTC"
    assert ts.iloc[-1].value <= NOW_NS + 3600e9
    vol = bars["volume"].to_numpy(dtype=float)
    assert not (vol < 0).any() and not np.isinf(vol).any()


@given(st.binary(max_size=600))
def test_any_bytes_as_a_csv_file(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "bars.csv"
    path.write_bytes(raw)
    _check_invariants(_read(path))


@given(
    st.lists(st.tuples(_CELL_TS, _PRICE, _PRICE, _PRICE, _PRICE, _PRICE), max_size=25),
    st.sampled_from([",", ";", "\t", "|"]),
)
def test_hostile_cells_in_a_well_formed_csv(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, ...]], sep: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "bars.csv"
    text = "\n".join(sep.join(r) for r in [tuple(HEADER), *rows])
    path.write_text(text, encoding="utf-8")
    _check_invariants(_read(path))


_COLUMN = st.sampled_from(
    [pa.int64(), pa.float64(), pa.string(), pa.bool_(), pa.binary(), pa.null(),
     pa.timestamp("ns"), pa.timestamp("s", tz="Asia/Tokyo"), pa.date32(), pa.int8(),
     pa.decimal128(38, 10)]
)  # fmt: skip


def _values(kind: pa.DataType, n: int, data: st.DataObject) -> pa.Array:
    if pa.types.is_null(kind):
        return pa.nulls(n)
    if pa.types.is_boolean(kind):
        return pa.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), kind)
    if pa.types.is_int8(kind):
        return pa.array(data.draw(st.lists(st.integers(-128, 127), min_size=n, max_size=n)), kind)
    if pa.types.is_integer(kind):
        ints = st.integers(-(2**63), 2**63 - 1)
        return pa.array(data.draw(st.lists(ints, min_size=n, max_size=n)), kind)
    if pa.types.is_floating(kind):
        return pa.array(data.draw(st.lists(st.floats(), min_size=n, max_size=n)), kind)
    if pa.types.is_string(kind):
        cells = st.one_of(_GOOD_TS, _ODD, _PRICE, st.none())
        return pa.array(data.draw(st.lists(cells, min_size=n, max_size=n)), kind)
    if pa.types.is_binary(kind):
        return pa.array(data.draw(st.lists(st.binary(max_size=8), min_size=n, max_size=n)), kind)
    if pa.types.is_timestamp(kind):
        secs = st.integers(-(9 * 10**9), 9 * 10**9)  # as far as nanoseconds reach
        unit = 10**9 if kind.unit == "ns" else 1
        got = data.draw(st.lists(secs, min_size=n, max_size=n))
        return pa.array([s * unit for s in got], kind)
    if pa.types.is_date(kind):
        return pa.array(data.draw(st.lists(st.integers(-(10**5), 10**5), min_size=n,
                                           max_size=n)), pa.int32()).cast(kind)  # fmt: skip
    from decimal import Decimal

    decs = st.decimals(-(10**6), 10**6, places=4, allow_nan=False).map(Decimal)
    return pa.array(data.draw(st.lists(decs, min_size=n, max_size=n)), kind)


@given(st.lists(_COLUMN, min_size=6, max_size=6), st.integers(0, 12), st.data())
def test_any_column_types_in_a_parquet_file(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[pa.DataType], n: int, data: st.DataObject
) -> None:
    table = pa.table(
        {name: _values(kind, n, data) for name, kind in zip(HEADER, kinds, strict=True)}
    )
    path = tmp_path_factory.mktemp("fuzz") / "bars.parquet"
    pq.write_table(table, path)
    _check_invariants(_read(path))


def _good_parquet() -> bytes:
    ts = pd.date_range("2024-01-02", periods=48, freq="h", tz="UTC")
    close = 100 + np.arange(48) * 0.1
    frame = pd.DataFrame({"ts": ts, "open": close, "high": close + 0.2, "low": close - 0.2,
                          "close": close, "volume": 1.0})  # fmt: skip
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


GOOD_PARQUET = _good_parquet()


@given(st.lists(st.tuples(st.integers(0, len(GOOD_PARQUET) - 1), st.integers(0, 255)),
                min_size=1, max_size=8), st.integers(1, len(GOOD_PARQUET)))  # fmt: skip
def test_a_damaged_parquet_file(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]], keep: int
) -> None:
    raw = bytearray(GOOD_PARQUET[:keep])
    for at, value in flips:
        if at < len(raw):
            raw[at] = value
    path = tmp_path_factory.mktemp("fuzz") / "bars.parquet"
    path.write_bytes(bytes(raw))
    _check_invariants(_read(path))


def test_the_good_parquet_file_reads_whole(tmp_path: Path) -> None:
    """The damaged files start from a file that reads (the fuzz is not of files never good)."""
    path = tmp_path / "bars.parquet"
    path.write_bytes(GOOD_PARQUET)
    bars = _read(path)
    assert bars is not None and len(bars) == 48
    assert math.isclose(float(bars["close"].iloc[-1]), 104.7)
