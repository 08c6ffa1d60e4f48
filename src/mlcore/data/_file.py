"""File provider: CSV and Parquet OHLCV files as users really have them."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlcore._files import FileRefused, check_name, check_regular_file
from mlcore.config import MAX_FILE_BYTES, IsolatedRows
from mlcore.data._parse import DateOrder, check_unique_columns, parse_table
from mlcore.data._provider import FetchResult
from mlcore.errors import BadDataError, ConfigError, FatalError, shown

MAX_COLUMNS = 1000  # an OHLCV file has a handful; far more is not one (and slow to parse)
MAX_HEADER_BYTES = 1 << 16
#: The longest line (or cell) a CSV may have: an OHLCV row is a few hundred bytes, and one
#: cell of 200 MB took pandas 1.3 GB (and 50 s) to read.
MAX_LINE_BYTES = 1 << 16
_CHUNK_BYTES = 1 << 20


def _sniff_delimiter(path: Path) -> str:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        head = fh.read(8192)
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _plain_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A Parquet column as one of the three kinds the parser reads: nanosecond timestamps (in
    their own zone), float64 numbers or text. Anything else a file may hold (dates, decimals,
    booleans, bytes, nested values, instants outside 1677–2262) becomes text, whose bad rows
    the parser rejects with their number, rather than an exception from the conversion."""
    kind = col.type
    casts: list[pa.DataType] = [pa.string()]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return col
    if pa.types.is_timestamp(kind):
        casts.insert(0, pa.timestamp("ns", kind.tz))
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        casts.insert(0, pa.float64())
    for target in casts:
        try:
            return pc.cast(col, target, safe=not pa.types.is_floating(target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return pa.chunked_array([pa.array([_text(v) for v in col.to_pylist()], pa.string())])


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _too_large(path: Path, size: int, what: str, max_bytes: int) -> BadDataError:
    return BadDataError(
        "DATA_FILE_TOO_LARGE",
        f"{path}: {size:,} bytes{what}, over the {max_bytes:,} allowed "
        "(pipeline_policy max_file_bytes)",
        details={"path": str(path), "bytes": size, "max_bytes": max_bytes},
    )


def _check_cells(path: Path, group: int, table: pa.Table) -> None:
    """Refuse a text cell longer than a CSV line may be (Arrow measures it without copying)."""
    for name, col in zip(table.column_names, table.columns, strict=True):
        kind = col.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):  # fmt: skip
            continue
        longest = pc.max(pc.binary_length(col)).as_py() or 0
        if longest > MAX_LINE_BYTES:
            raise BadDataError(
                "DATA_FILE_LINE_TOO_LONG",
                f"{path}: row group {group}, column {shown(name)}: a cell of {longest:,} bytes, "
                f"over the {MAX_LINE_BYTES:,} allowed (an OHLCV row is a few hundred)",
                details={"path": str(path), "bytes": longest, "max_bytes": MAX_LINE_BYTES},
            )


def _read_parquet(path: Path, max_bytes: int) -> pd.DataFrame:
    """A Parquet's data, read one row group at a time: refused once they are over
    ``max_bytes`` uncompressed (by the footer's count, then as decoded) or hold a text cell
    over MAX_LINE_BYTES, so a small file of compressed repeats cannot fill memory."""
    with pq.ParquetFile(path) as parquet:
        meta = parquet.metadata
        names = parquet.schema_arrow.names
        _check_width(path, len(names))
        check_unique_columns(names, str(path))
        encoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if encoded > max_bytes:
            raise _too_large(path, encoded, " of data uncompressed", max_bytes)
        parts: list[pa.Table] = []
        decoded = 0
        for group in range(meta.num_row_groups):
            part = parquet.read_row_group(group)
            decoded += part.nbytes
            if decoded > max_bytes:
                raise _too_large(path, decoded, " of data once decoded", max_bytes)
            _check_cells(path, group, part)
            parts.append(part)
        table = pa.concat_tables(parts) if parts else parquet.schema_arrow.empty_table()
    columns = zip(table.column_names, table.columns, strict=True)
    plain = pa.table({name: _plain_column(col) for name, col in columns})
    frame: pd.DataFrame = plain.to_pandas()
    return frame


def _check_usable(path: Path) -> None:
    try:
        check_name(path)
    except FileRefused as exc:
        raise ConfigError(
            "DATA_FILE_UNUSABLE", str(exc), details={"path": shown(str(path))}
        ) from None


def _check_regular(path: Path, max_bytes: int) -> None:
    """A FIFO, device or /proc file would block or never end inside pandas or pyarrow; a file
    over ``max_bytes`` would take several times its size while pandas reads it."""
    try:
        size = check_regular_file(path)
    except FileRefused as exc:
        raise ConfigError("DATA_FILE_UNUSABLE", str(exc), details={"path": str(path)}) from None
    except OSError as exc:
        raise FatalError(
            "DATA_FILE_UNREADABLE", f"{path}: cannot read ({exc.strerror or exc})"
        ) from exc
    if size == 0:  # also what /proc files report, whose reads may block or never end
        raise BadDataError("DATA_FILE_EMPTY", f"{path}: the file is empty (0 bytes)")
    if size > max_bytes:
        raise _too_large(path, size, "", max_bytes)


# Longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _check_not_wide_text(path: Path) -> None:
    """A file saved as UTF-16/UTF-32 (Excel's "Unicode text") is named as such, not as
    "not UTF-8 (byte 0)", which leaves the user guessing."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    for mark, encoding in _BOMS:
        if head.startswith(mark):
            raise BadDataError(
                "DATA_FILE_MALFORMED",
                f"{path}: the file is {encoding} (BOM): save it as UTF-8",
                details={"path": str(path), "encoding": encoding},
            )


def _check_header(path: Path, sep: str) -> None:
    """Refuse a header too long or too wide to be an OHLCV one before pandas parses it."""
    with open(path, "rb") as fh:
        head = fh.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        raise BadDataError(
            "DATA_FILE_SCHEMA", f"{path}: header line over {MAX_HEADER_BYTES:,} bytes"
        )
    names = next(csv.reader([head.decode("utf-8-sig", "replace")], delimiter=sep), [])
    _check_width(path, len(names))
    check_unique_columns(names, str(path))


def _line_too_long(path: Path, line: int, what: str, limit: int) -> BadDataError:
    return BadDataError(
        "DATA_FILE_LINE_TOO_LONG",
        f"{path}: line {line:,} {what} over the {limit:,} bytes allowed "
        "(an OHLCV row is a few hundred)",
        details={"path": str(path), "line": line, "max_bytes": limit},
    )


def _check_lines(path: Path, sep: str) -> None:
    """Refuse a CSV with a line (or a quoted cell spanning lines) over MAX_LINE_BYTES before
    pandas parses it. The file is streamed a MiB at a time, and each step jumps to the last
    line end within MAX_LINE_BYTES, so the check costs a fraction of the parse."""
    lines_before = 0  # line ends before ``buf``
    buf = b""
    quoted = False
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            quoted = quoted or b'"' in chunk
            buf += chunk
            start = 0
            while len(buf) - start > MAX_LINE_BYTES:
                window = start + MAX_LINE_BYTES + 1
                end = max(buf.rfind(b"\n", start, window), buf.rfind(b"\r", start, window))
                if end < 0:
                    line = lines_before + buf.count(b"\n", 0, start) + 1
                    raise _line_too_long(path, line, "is", MAX_LINE_BYTES)
                start = end + 1
            lines_before += buf.count(b"\n", 0, start)
            buf = buf[start:]
    if quoted:
        _check_quoted_cells(path, sep)


def _check_quoted_cells(path: Path, sep: str) -> None:
    """A quoted cell may span lines: the csv module reads them, one row at a time, and stops
    at a cell over its field limit (128 KiB unless changed)."""
    limit = csv.field_size_limit()
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            for _ in reader:
                pass
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise _line_too_long(path, reader.line_num, "is in a quoted cell", limit) from None
            # any other oddity is pandas' to name


def _check_width(path: Path, columns: int) -> None:
    if columns > MAX_COLUMNS:
        raise BadDataError(
            "DATA_FILE_SCHEMA",
            f"{path}: {columns:,} columns, over the {MAX_COLUMNS:,} an OHLCV file may have",
        )


def read_table(path: Path, max_bytes: int = MAX_FILE_BYTES) -> pd.DataFrame:
    """Read a CSV (any delimiter, optional BOM) or Parquet file as raw columns; a file over
    ``max_bytes`` or a CSV with a line over MAX_LINE_BYTES is refused (exit 65)."""
    _check_usable(path)
    if not path.exists():
        raise FatalError(
            "DATA_FILE_NOT_FOUND", f"{path}: no such file", details={"path": str(path)}
        )
    if path.is_dir():
        raise FatalError("DATA_FILE_UNREADABLE", f"{path}: is a folder, not a file")
    _check_regular(path, max_bytes)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return _read_parquet(path, max_bytes)
        _check_not_wide_text(path)
        sep = _sniff_delimiter(path)
        _check_header(path, sep)
        _check_lines(path, sep)
        return pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            skipinitialspace=True,
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise BadDataError("DATA_FILE_EMPTY", f"{path}: the file is empty") from exc
    except pd.errors.ParserError as exc:
        raise BadDataError(
            "DATA_FILE_MALFORMED",
            f"{path}: not a well-formed CSV ({shown(' '.join(str(exc).split()), 200)})",
            details={"path": str(path)},
        ) from exc
    except UnicodeDecodeError as exc:
        raise BadDataError(
            "DATA_FILE_MALFORMED",
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})",
            details={"path": str(path)},
        ) from exc
    except pa.ArrowInvalid as exc:
        why = shown(" ".join(str(exc).split()), 200)  # Arrow's messages span lines (schemas)
        raise BadDataError(
            "DATA_FILE_MALFORMED", f"{path}: cannot read ({why})", details={"path": str(path)}
        ) from exc
    except OSError as exc:  # permissions, a vanished mount: the file is not at fault
        raise FatalError(
            "DATA_FILE_UNREADABLE",
            f"{path}: cannot read ({exc.strerror or exc})",
            details={"path": str(path)},
        ) from exc


class FileProvider:
    """Deliver bars from one CSV/Parquet file (timestamps without zone are taken in ``tz``; a
    file over ``max_bytes`` is refused)."""

    def __init__(
        self,
        path: Path,
        *,
        tz: str = "UTC",
        price_abs_tolerance: float = 0.0,
        date_format: str = DateOrder.AUTO,
        earliest: pd.Timestamp | None = None,
        isolation: IsolatedRows | None = None,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.tz = tz
        self.price_abs_tolerance = price_abs_tolerance
        self.date_format = date_format
        self.earliest = earliest
        self.isolation = isolation
        self.name = f"file:{path.name}"

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> FetchResult:
        """Read the whole file, parse it, and keep bars within [start, end]."""
        result = self.read(timeframe)
        ts = result.bars["ts"]
        keep = (ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))
        result.bars = result.bars[keep].reset_index(drop=True)
        return result

    def read(self, timeframe: str) -> FetchResult:
        """Parse every row of the file."""
        frame = read_table(self.path, self.max_bytes)
        if frame.empty:
            raise BadDataError("DATA_FILE_EMPTY", f"{self.path}: header only, no data rows")
        # CSV data rows start on line 2 (after the header) so row numbers match an editor's.
        offset = 2 if self.path.suffix.lower() not in (".parquet", ".pq") else 1
        result = parse_table(
            frame,
            origin=str(self.path),
            timeframe=timeframe,
            tz=self.tz,
            price_abs_tolerance=self.price_abs_tolerance,
            row_offset=offset,
            date_format=self.date_format,
            earliest=self.earliest,
            isolation=self.isolation,
        )
        result.source = self.name
        return result
