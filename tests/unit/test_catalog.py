"""Catalog index, DQ filter with reasons, and the hash-verified reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.config import AppConfig
from mlcore.data import Catalog, FetchResult, PartitionStore, build_catalog, ingest
from mlcore.errors import DataQualityError, FatalError

SPEC_COLUMNS = [
    "timeframe",
    "symbol",
    "year",
    "month",
    "last_ts",
    "missing_gaps",
    "outlier_bars",
    "spike_flags",
    "quarantine_flag",
    "data_hash",
]


def _bars(start: str, n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 2000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.0005,
            "low": np.minimum(open_, close) * 0.9995,
            "close": close,
            "volume": 5.0,
        }
    )


def _ingest(cfg: AppConfig, bars: pd.DataFrame, sym: str = "ETH/USD") -> None:
    ingest(
        cfg,
        FetchResult(bars=bars.reset_index(drop=True), source="t", rows_read=len(bars)),
        sym,
        "1h",
    )


@pytest.fixture
def built(cfg: AppConfig) -> AppConfig:
    bars = _bars("2024-01-01", 24 * 91)  # Jan, Feb, Mar
    months = bars["ts"].dt.month
    feb = bars.index[months == 2]
    mar = bars.index[months == 3]
    drop = list(feb[200:206])  # 6-bar gap: quarantine Feb
    drop += [int(i) for i in mar[10:700:3][:20]]  # 20 single-bar gaps: filled, missing_rate > 2%
    _ingest(cfg, bars.drop(index=drop))
    build_catalog(cfg)
    return cfg


def test_index_has_spec_columns_and_one_row_per_partition(built: AppConfig) -> None:
    index = pd.read_parquet(built.paths.catalog / "dataset_index.parquet")
    assert set(SPEC_COLUMNS) <= set(index.columns)
    assert list(index["month"]) == [1, 2, 3]
    assert list(index["year"]) == [2024] * 3
    assert list(index["quarantine_flag"]) == [False, True, False]
    metas = [
        json.loads(p.read_text())
        for p in sorted(
            PartitionStore(built.paths.canonical).symbol_dir("1h", "ETH/USD").glob("*/__meta.json")
        )
    ]
    assert list(index["data_hash"]) == [m["data_hash"] for m in metas]
    assert list(index["missing_gaps"]) == [m["counts"]["missing_gaps"] for m in metas]


def test_filter_records_reason_for_each_exclusion(built: AppConfig) -> None:
    filtered = json.loads((built.paths.catalog / "dataset_index_filtered.json").read_text())
    assert [p["month"] for p in filtered["included"]] == ["2024-01"]
    reasons = {p["month"]: p["reasons"] for p in filtered["excluded"]}
    assert reasons["2024-02"][0] == "quarantined"
    assert len(reasons["2024-03"]) == 1
    assert reasons["2024-03"][0].startswith("missing_rate 0.0")
    assert reasons["2024-03"][0].endswith("> 0.02")
    assert filtered["filters"] == {"missing_rate": 0.02, "outlier_rate": 0.005, "quarantine": True}


def test_reader_returns_only_included_partitions(built: AppConfig) -> None:
    cat = Catalog(built)
    bars = cat.load_bars("1h", "ETH/USD")
    assert set(bars["ts"].dt.month) == {1}
    assert bars["ts"].is_monotonic_increasing
    assert len(cat.excluded("1h", "ETH/USD")) == 2
    assert cat.data_hash(cat.partitions("1h", "ETH/USD")) == cat.catalog_hash


def test_reader_refuses_a_tampered_partition(built: AppConfig) -> None:
    path = (
        PartitionStore(built.paths.canonical).partition_dir("1h", "ETH/USD", "2024-01")
        / "bars.parquet"
    )
    frame = pd.read_parquet(path)
    frame.loc[5, "close"] = frame.loc[5, "close"] * 1.01
    frame.to_parquet(path, index=False)
    with pytest.raises(DataQualityError) as exc:
        Catalog(built).load_bars("1h", "ETH/USD")
    assert exc.value.code == "CATALOG_HASH_MISMATCH"
    assert "2024-01" in exc.value.message


def test_outlier_rate_filter(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 24 * 31)
    for i in range(100, 700, 100):  # six bad prints in one month: 0.8% > 0.5%
        bars.loc[i, ["close", "high"]] = bars.loc[i, "close"] * 1.15
        bars.loc[i + 1, "open"] = bars.loc[i, "close"]
        bars.loc[i + 1, "high"] = max(bars.loc[i + 1, "high"], bars.loc[i, "close"])
    _ingest(cfg, bars)
    build_catalog(cfg)
    [excl] = Catalog(cfg).excluded("1h", "ETH/USD")
    assert excl["reasons"] == ["outlier_rate 0.0081 > 0.005"]


def test_catalog_must_be_built_first(cfg: AppConfig) -> None:
    with pytest.raises(FatalError, match="run `mlcore catalog build` first"):
        Catalog(cfg)


def test_partition_without_meta_is_reported(built: AppConfig) -> None:
    pdir = PartitionStore(built.paths.canonical).partition_dir("1h", "ETH/USD", "2024-01")
    (pdir / "__meta.json").unlink()
    summary = build_catalog(built)
    assert summary.unreadable == ((str(pdir), "no __meta.json"),)
    with pytest.raises(DataQualityError, match=r"1 partition\(s\) could not be read"):
        summary.check_complete()


def _damage(pdir: Path, how: str) -> str:
    bars = pdir / "bars.parquet"
    if how == "zero bytes":
        bars.write_bytes(b"")
        return "bars.parquet is empty (0 bytes)"
    if how == "truncated":
        bars.write_bytes(bars.read_bytes()[:200])
        return "bars.parquet cannot be read"
    if how == "other bars":
        frame = pd.read_parquet(bars)
        frame.loc[3, "close"] += 1
        frame.to_parquet(bars, index=False)
        return "bars.parquet does not match its data hash"
    if how == "no bars file":
        bars.unlink()
        return "no bars.parquet"
    (pdir / "__meta.json").write_text("{truncated")
    return "unreadable __meta.json"


@pytest.mark.parametrize(
    "how", ["zero bytes", "truncated", "other bars", "no bars file", "meta not JSON"]
)
def test_catalog_build_names_every_partition_it_could_not_read(built: AppConfig, how: str) -> None:
    """Issue 16: such a partition was indexed unread (or, without meta, the build stopped);
    a damaged bars file only showed later, in training."""
    store = PartitionStore(built.paths.canonical)
    jan, mar = (store.partition_dir("1h", "ETH/USD", m) for m in ("2024-01", "2024-03"))
    why = _damage(jan, how)
    _damage(mar, "zero bytes")
    summary = build_catalog(built)
    assert [p for p, _ in summary.unreadable] == [str(jan), str(mar)]
    assert summary.unreadable[0][1].startswith(why)
    assert (summary.partitions, summary.included) == (3, 0)
    filtered = json.loads(summary.filtered_path.read_text())
    reasons = {p["month"]: p["reasons"] for p in filtered["excluded"]}
    assert reasons["2024-01"][0].startswith(f"unreadable: {why}")
    with pytest.raises(DataQualityError, match="CATALOG_PARTITION_UNREADABLE: 2 partition"):
        summary.check_complete()


def test_catalog_build_names_raw_months_an_interrupted_ingest_left_unbuilt(
    built: AppConfig,
) -> None:
    store = PartitionStore(built.paths.canonical)
    store.remove("1h", "ETH/USD", "2024-03")  # raw written, canonical never swapped in
    summary = build_catalog(built)
    raw = PartitionStore(built.paths.raw).partition_dir("1h", "ETH/USD", "2024-03")
    assert summary.unbuilt == (str(raw),) and summary.unreadable == ()
    with pytest.raises(DataQualityError, match="1 raw month\\(s\\) have no canonical"):
        summary.check_complete()
    # Ingesting the symbol again builds it; the catalog is then whole.
    _ingest(built, _bars("2024-03-30", 24))
    build_catalog(built).check_complete()


def test_empty_archive_builds_empty_catalog(cfg: AppConfig) -> None:
    summary = build_catalog(cfg)
    assert (summary.partitions, summary.included, summary.excluded) == (0, 0, 0)
