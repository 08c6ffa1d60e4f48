"""Dataset catalog: every canonical ``__meta.json`` in one index, a DQ filter, and the reader
through which later stages get bars."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlcore._files import read_regular_file
from mlcore.config import AppConfig
from mlcore.data._atomic import write_atomic
from mlcore.data._lock import symbol_lock
from mlcore.data._store import (
    BARS_FILE,
    CANONICAL_COLUMNS,
    META_FILE,
    QUARANTINE_FILE,
    PartitionStore,
    bars_hash,
    dirname_symbol,
    json_bytes,
    symbol_dirname,
    to_parquet_bytes,
)
from mlcore.errors import DataQualityError, FatalError, shown

INDEX_FILE = "dataset_index.parquet"
MAX_FILTERED_BYTES = 1 << 28  # the filtered index of a large archive is a few MB
FILTERED_FILE = "dataset_index_filtered.json"
INDEX_COLUMNS = (
    "timeframe",
    "symbol",
    "year",
    "month",
    "last_ts",
    "bars_written",
    "missing_gaps",
    "filled_bars",
    "outlier_bars",
    "spike_flags",
    "conflict_bars",
    "quarantine_flag",
    "data_hash",
    "path",
)


@dataclass(frozen=True)
class CatalogSummary:
    """What ``catalog build`` wrote, and the partitions it could not index."""

    partitions: int
    included: int
    excluded: int
    index_path: Path
    filtered_path: Path
    catalog_hash: str
    #: (partition folder, why) for every canonical partition that could not be read
    unreadable: tuple[tuple[str, str], ...] = ()
    #: raw month folders without a canonical partition (an ingest that did not finish)
    unbuilt: tuple[str, ...] = ()

    def check_complete(self) -> None:
        """Refuse a catalog that left partitions out (DataQualityError, exit 65)."""
        if not self.unreadable and not self.unbuilt:
            return
        parts = []
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} partition(s) could not be read "
                         f"(first: {self.unreadable[0][0]}: {self.unreadable[0][1]})")  # fmt: skip
        if self.unbuilt:
            parts.append(f"{len(self.unbuilt)} raw month(s) have no canonical partition "
                         f"(first: {self.unbuilt[0]})")  # fmt: skip
        raise DataQualityError(
            "CATALOG_PARTITION_UNREADABLE",
            f"{'; '.join(parts)}; the catalog was written without them: ingest those symbols "
            "again (`mlcore ingest ... --rewrite` rewrites every partition)",
            details={"unreadable": [p for p, _ in self.unreadable], "unbuilt": list(self.unbuilt)},
        )


def _index_row(meta: dict[str, Any], pdir: Path, root: Path) -> dict[str, Any]:
    counts = meta["counts"]
    year, month = (int(x) for x in meta["month"].split("-"))
    return {
        "timeframe": meta["timeframe"],
        "symbol": meta["symbol"],
        "year": year,
        "month": month,
        "last_ts": pd.Timestamp(meta["last_ts"]) if meta["last_ts"] else pd.NaT,
        "bars_written": int(counts["bars_written"]),
        "missing_gaps": int(counts["missing_gaps"]),
        "filled_bars": int(counts["filled_bars"]),
        "outlier_bars": int(counts["outlier_bars"]),
        "spike_flags": int(counts["spike_flags"]),
        "conflict_bars": int(counts["conflict_bars"]),
        "quarantine_flag": (pdir / QUARANTINE_FILE).exists(),
        "data_hash": meta["data_hash"],
        "path": str(pdir.relative_to(root)),
    }


def _check_place(meta: dict[str, Any], where: tuple[str, str, str]) -> None:
    """A partition copied or moved to another folder would be indexed twice or under the
    wrong symbol: its meta must name the folder it is in."""
    timeframe, symbol, month = where
    said = (meta["timeframe"], meta["symbol"], meta["month"])
    if said != (timeframe, symbol, month):
        raise ValueError(
            f"{META_FILE} names {shown(said[0])}/{shown(said[1])}/{shown(said[2])}, "
            f"not its folder {timeframe}/{symbol}/{month} (copied or moved?)"
        )


def _read_partition(
    store: PartitionStore, where: tuple[str, str, str], root: Path
) -> dict[str, Any]:
    """The index row of one partition, its bars read and checked against its data hash;
    ValueError naming what is wrong otherwise."""
    pdir = store.partition_dir(*where)
    try:
        meta = store.read_json(*where, META_FILE)
    except DataQualityError as exc:
        raise ValueError(f"unreadable {META_FILE}") from exc
    if meta is None:
        raise ValueError(f"no {META_FILE}")
    try:
        row = _index_row(meta, pdir, root)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{META_FILE}: missing or bad field ({shown(str(exc), 200)})") from exc
    _check_place(meta, where)
    path = pdir / BARS_FILE
    if not path.is_file():
        raise ValueError(f"no {BARS_FILE}")
    if path.stat().st_size == 0:
        raise ValueError(f"{BARS_FILE} is empty (0 bytes)")
    try:
        bars = store.read_file(*where, BARS_FILE)
        got = bars_hash(bars) if bars is not None else ""
    except (DataQualityError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{BARS_FILE} cannot be read ({exc})") from exc
    if got != row["data_hash"]:
        raise ValueError(f"{BARS_FILE} does not match its data hash")
    return row


def _scan(cfg: AppConfig) -> tuple[list[dict[str, Any]], list[tuple[str, str]], list[str]]:
    """Index rows, unreadable partitions (folder, why) and raw months never made canonical.

    Each symbol is read under its ingest lock: an ingest under way is waited for, and an
    interrupted one's half-swapped folders are recovered, never taken from a live writer.
    """
    root = cfg.paths.canonical
    store, raw = PartitionStore(root), PartitionStore(cfg.paths.raw)
    rows: list[dict[str, Any]] = []
    unreadable: list[tuple[str, str]] = []
    unbuilt: list[str] = []
    for timeframe, symbol in sorted(set(store.iter_symbols()) | set(raw.iter_symbols())):
        with symbol_lock(cfg.paths.raw, symbol, timeframe):
            months = store.months(timeframe, symbol)
            for month in months:
                try:
                    rows.append(_read_partition(store, (timeframe, symbol, month), root))
                except ValueError as exc:
                    unreadable.append(
                        (str(store.partition_dir(timeframe, symbol, month)), str(exc))
                    )
            unbuilt += [
                str(raw.partition_dir(timeframe, symbol, m))
                for m in raw.months(timeframe, symbol)
                if m not in months
            ]
    return rows, unreadable, unbuilt


def exclusion_reasons(row: pd.Series, missing_rate: float, outlier_rate: float) -> list[str]:
    """Why a partition is excluded from training (empty list: included)."""
    reasons = []
    if row["quarantine_flag"]:
        reasons.append("quarantined")
    bars = int(row["bars_written"])
    if bars == 0:
        reasons.append("no bars")
        return reasons
    miss = row["missing_gaps"] / bars
    if miss > missing_rate:
        reasons.append(f"missing_rate {miss:.4f} > {missing_rate}")
    out = row["outlier_bars"] / bars
    if out > outlier_rate:
        reasons.append(f"outlier_rate {out:.4f} > {outlier_rate}")
    return reasons


def build_catalog(cfg: AppConfig) -> CatalogSummary:
    """Collect every canonical partition into the index and write the DQ-filtered list."""
    rows, unreadable, unbuilt = _scan(cfg)
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    if len(index):
        index = index.sort_values(["timeframe", "symbol", "year", "month"]).reset_index(drop=True)
    index["last_ts"] = pd.to_datetime(index["last_ts"], utc=True).astype("datetime64[ns, UTC]")
    th = cfg.pipeline.dq_thresholds
    included: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    for _, row in index.iterrows():
        key = {
            "timeframe": row["timeframe"],
            "symbol": row["symbol"],
            "month": f"{row['year']:04d}-{row['month']:02d}",
            "data_hash": row["data_hash"],
        }
        reasons = exclusion_reasons(row, th.missing_rate, th.outlier_rate)
        (excluded if reasons else included).append({**key, "reasons": reasons} if reasons else key)
    for folder, why in unreadable:
        month = Path(folder).name
        timeframe, symbol = (
            Path(folder).parent.parent.name,
            dirname_symbol(Path(folder).parent.name),
        )
        excluded.append({"timeframe": timeframe, "symbol": symbol, "month": month,
                         "data_hash": None, "reasons": [f"unreadable: {why}"]})  # fmt: skip
    catalog_hash = hashlib.sha256(
        "\n".join(
            f"{r['timeframe']}|{r['symbol']}|{r['month']}|{r['data_hash']}" for r in included
        ).encode()
    ).hexdigest()
    filtered = {
        "filters": {
            "missing_rate": th.missing_rate,
            "outlier_rate": th.outlier_rate,
            "quarantine": True,
        },
        "included": included,
        "excluded": excluded,
        "catalog_hash": catalog_hash,
    }
    cfg.paths.catalog.mkdir(parents=True, exist_ok=True)
    index_path = cfg.paths.catalog / INDEX_FILE
    filtered_path = cfg.paths.catalog / FILTERED_FILE
    write_atomic(index_path, to_parquet_bytes(index))
    write_atomic(filtered_path, json_bytes(filtered))
    counts = (len(included) + len(excluded), len(included), len(excluded))
    return CatalogSummary(
        *counts, index_path, filtered_path, catalog_hash, tuple(unreadable), tuple(unbuilt)
    )


class Catalog:
    """Read access to canonical bars, only through the filtered index."""

    def __init__(self, cfg: AppConfig) -> None:
        self._root = cfg.paths.canonical
        path = cfg.paths.catalog / FILTERED_FILE
        if not path.exists():
            raise FatalError(
                "CATALOG_INDEX_MISSING",
                f"{path} does not exist; run `mlcore catalog build` first",
            )
        try:
            filtered = json.loads(read_regular_file(path, MAX_FILTERED_BYTES))
            if not isinstance(filtered, dict):
                raise ValueError("not a JSON object")
        except (ValueError, RecursionError) as exc:  # FileRefused is a ValueError
            why = "nested too deeply" if isinstance(exc, RecursionError) else shown(str(exc), 200)
            raise FatalError(
                "CATALOG_INDEX_UNREADABLE",
                f"{path}: unreadable ({why}); run `mlcore catalog build` again",
            ) from None
        self.filtered: dict[str, Any] = filtered

    @property
    def catalog_hash(self) -> str:
        """SHA256 over the included partitions and their data hashes."""
        return str(self.filtered["catalog_hash"])

    def partitions(self, timeframe: str, symbol: str) -> list[dict[str, Any]]:
        """Included partitions of one symbol, oldest first."""
        return [
            p
            for p in self.filtered["included"]
            if p["timeframe"] == timeframe and p["symbol"] == symbol
        ]

    def excluded(self, timeframe: str, symbol: str) -> list[dict[str, Any]]:
        """Excluded partitions of one symbol, with reasons."""
        return [
            p
            for p in self.filtered["excluded"]
            if p["timeframe"] == timeframe and p["symbol"] == symbol
        ]

    def data_hash(self, parts: list[dict[str, Any]]) -> str:
        """One SHA256 over a set of partitions (the training run's ``data_hash``)."""
        text = "\n".join(
            f"{p['timeframe']}|{p['symbol']}|{p['month']}|{p['data_hash']}" for p in parts
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def load_bars(
        self,
        timeframe: str,
        symbol: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Canonical bars of the included partitions, each verified against its data hash."""
        frames = []
        for part in self.partitions(timeframe, symbol):
            pdir = self._root / timeframe / symbol_dirname(symbol) / part["month"]
            frame = pd.read_parquet(pdir / BARS_FILE)
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
            got = bars_hash(frame)
            if got != part["data_hash"]:
                raise DataQualityError(
                    "CATALOG_HASH_MISMATCH",
                    f"{pdir}: data hash {got[:12]} does not match the catalog's "
                    f"{part['data_hash'][:12]}; rebuild the catalog or re-ingest",
                    details={"path": str(pdir)},
                )
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=list(CANONICAL_COLUMNS))
        bars = pd.concat(frames, ignore_index=True)
        if start is not None:
            bars = bars[bars["ts"] >= start]
        if end is not None:
            bars = bars[bars["ts"] <= end]
        return bars.reset_index(drop=True)
