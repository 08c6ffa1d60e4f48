"""Partitioned Parquet stores: raw accepted bars and canonical bars, by timeframe/symbol/month."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcore._files import FileRefused, check_regular_file, read_regular_file
from mlcore.data._atomic import FaultHook, recover, remove_dir, replace_dir
from mlcore.errors import ConfigError, DataQualityError, shown

MAX_JSON_BYTES = 1 << 20  # a partition's JSON is a few KB
MAX_PARTITION_FILE_BYTES = 1 << 31  # a month of 1-minute bars is a few MB
RAW_FILE = "raw.parquet"
RAW_META_FILE = "__raw_meta.json"
CONFLICTS_FILE = "__conflicts.parquet"
BARS_FILE = "bars.parquet"
META_FILE = "__meta.json"
QUARANTINE_FILE = "__quarantine.json"
EXCLUDED_FILE = "__excluded.parquet"
PRICE_COLS = ("open", "high", "low", "close", "volume")
# Column order of a canonical bars.parquet.
CANONICAL_COLUMNS = ("ts", "symbol", "timeframe", *PRICE_COLS, "quality_flag")


MAX_SYMBOL_DIRNAME = 64


def symbol_dirname(symbol: str) -> str:
    """Folder name of a normalized symbol (``XAU/USD`` -> ``XAU_USD``).

    Refuses a name that is not one plain folder inside the timeframe's, whatever a caller let
    through: empty, ``.``/``..``, holding a separator or NUL, or too long.
    """
    name = symbol.replace("/", "_")
    bad = name in ("", ".", "..") or any(c in name for c in ("\\", "\0", os.sep))
    if bad or len(name) > MAX_SYMBOL_DIRNAME or not name.isprintable():
        raise ConfigError(
            "DATA_SYMBOL_INVALID",
            f"symbol {shown(symbol)} cannot name a storage folder",
            details={"symbol": shown(symbol)},
        )
    return name


def dirname_symbol(name: str) -> str:
    """Inverse of :func:`symbol_dirname`."""
    return name.replace("_", "/")


def month_key(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """``YYYY-MM`` of each UTC timestamp (formats each distinct month once)."""
    idx = pd.DatetimeIndex(ts)
    if len(idx) == 0:
        return np.array([], dtype=object)
    codes = idx.year.to_numpy() * 12 + idx.month.to_numpy() - 1
    uniq, inverse = np.unique(codes, return_inverse=True)
    names = np.array([f"{c // 12:04d}-{c % 12 + 1:02d}" for c in uniq], dtype=object)
    return np.asarray(names[inverse])


def month_groups(ts: pd.Series | pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Row positions of each ``YYYY-MM``."""
    keys = month_key(ts)
    if len(keys) == 0:
        return {}
    return {str(k): np.asarray(v) for k, v in pd.Series(keys).groupby(keys).indices.items()}


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Serialize deterministically: Snappy, no pandas index, fixed schema order."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy", write_statistics=True)
    return buf.getvalue()


def json_bytes(obj: Mapping[str, Any]) -> bytes:
    """Serialize JSON deterministically (sorted keys, UTF-8, trailing newline)."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def bars_hash(bars: pd.DataFrame, text_cols: tuple[str, ...] = ("quality_flag",)) -> str:
    """SHA256 over bar content: timestamps, prices, volume, and the given text/bool columns."""
    h = hashlib.sha256()
    ts = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
    h.update(np.ascontiguousarray(ts, dtype="<i8").tobytes())
    for col in PRICE_COLS:
        h.update(np.ascontiguousarray(bars[col].to_numpy(dtype="float64"), dtype="<f8").tobytes())
    for col in text_cols:
        if col in bars:
            h.update(col.encode() + b"\0")
            h.update("\n".join(bars[col].astype(str).tolist()).encode())
    return h.hexdigest()


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        check_regular_file(path)  # a FIFO left in a partition would block pyarrow forever
        frame = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowInvalid, FileRefused) as exc:
        raise DataQualityError(
            "STORAGE_PARTITION_CORRUPT",
            f"{path}: cannot read partition file ({exc})",
            details={"path": str(path)},
        ) from exc
    if "ts" in frame:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    out: pd.DataFrame = frame
    return out


def _bytes_or_none(path: Path) -> bytes | None:
    """A partition file's bytes; None for one that is not a regular file (never equal to what
    is written, so the partition is rewritten) or that cannot be read."""
    try:
        return read_regular_file(path, MAX_PARTITION_FILE_BYTES)
    except FileRefused:
        return None


class PartitionStore:
    """One layer (raw or canonical) laid out as ``{root}/{timeframe}/{SYMBOL}/{YYYY-MM}/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def symbol_dir(self, timeframe: str, symbol: str) -> Path:
        """Folder holding every month of one symbol."""
        return self.root / timeframe / symbol_dirname(symbol)

    def partition_dir(self, timeframe: str, symbol: str, month: str) -> Path:
        """Folder of one month."""
        return self.symbol_dir(timeframe, symbol) / month

    def months(self, timeframe: str, symbol: str) -> list[str]:
        """Months present for a symbol, recovering interrupted writes first."""
        sdir = self.symbol_dir(timeframe, symbol)
        recover(sdir)
        if not sdir.is_dir():
            return []
        return sorted(p.name for p in sdir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def read_file(self, timeframe: str, symbol: str, month: str, name: str) -> pd.DataFrame | None:
        """Read one Parquet file of a partition, or None when absent."""
        path = self.partition_dir(timeframe, symbol, month) / name
        return _read_parquet(path) if path.exists() else None

    def read_json(
        self, timeframe: str, symbol: str, month: str, name: str
    ) -> dict[str, Any] | None:
        """Read one JSON file of a partition, or None when absent."""
        path = self.partition_dir(timeframe, symbol, month) / name
        if not path.exists():
            return None
        try:
            data: dict[str, Any] = json.loads(read_regular_file(path, MAX_JSON_BYTES))
        except (OSError, ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else shown(str(exc), 200)
            raise DataQualityError(
                "STORAGE_PARTITION_CORRUPT", f"{path}: unreadable JSON ({why})"
            ) from None
        return data

    def current_bytes(self, timeframe: str, symbol: str, month: str) -> dict[str, bytes | None]:
        """Every file of a partition as bytes (empty when the partition does not exist)."""
        pdir = self.partition_dir(timeframe, symbol, month)
        if not pdir.is_dir():
            return {}
        return {
            p.name: _bytes_or_none(p) for p in pdir.iterdir() if not p.name.startswith("__complete")
        }

    def write(
        self,
        timeframe: str,
        symbol: str,
        month: str,
        files: Mapping[str, bytes],
        fault: FaultHook | None = None,
    ) -> bool:
        """Atomically replace a partition with ``files``; return False when nothing changed."""
        if self.current_bytes(timeframe, symbol, month) == dict(files):
            return False
        replace_dir(self.partition_dir(timeframe, symbol, month), files, fault)
        return True

    def write_unless_same(
        self,
        timeframe: str,
        symbol: str,
        month: str,
        manifest: tuple[str, bytes],
        build: Callable[[], dict[str, bytes]],
        *,
        force: bool = False,
        fault: FaultHook | None = None,
        required: tuple[str, ...] = (),
    ) -> bool:
        """Write ``build()`` unless the stored manifest file already has these exact bytes.

        The manifest holds content hashes of every other file, so equal manifests mean an
        equal partition and the (costly) serialization is skipped, unless one of the
        ``required`` files is missing or empty (a damaged partition is rewritten).
        ``force`` always rewrites.
        """
        name, data = manifest
        pdir = self.partition_dir(timeframe, symbol, month)
        path = pdir / name
        whole = all((pdir / f).is_file() and (pdir / f).stat().st_size > 0 for f in required)
        if not force and whole and _bytes_or_none(path) == data:
            return False
        files = {**build(), name: data}
        replace_dir(self.partition_dir(timeframe, symbol, month), files, fault)
        return True

    def remove(self, timeframe: str, symbol: str, month: str) -> None:
        """Remove a partition (atomically: it is whole or gone)."""
        remove_dir(self.partition_dir(timeframe, symbol, month))

    def iter_symbols(self) -> Iterator[tuple[str, str]]:
        """Yield (timeframe, symbol) for every symbol folder in the store."""
        if not self.root.is_dir():
            return
        for tf_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for sym_dir in sorted(p for p in tf_dir.iterdir() if p.is_dir()):
                yield tf_dir.name, dirname_symbol(sym_dir.name)
