"""Ingestion into partitions: meta, quarantine, idempotence, updates, seams and crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.config import AppConfig
from mlcore.data import FetchResult, FileProvider, PartitionStore, bars_hash, ingest, read_watermark
from mlcore.errors import FatalError
from tests.conftest import third_party_csv

SYM = "BTC/USD"  # crypto calendar: every hour is expected


def _bars(start: str, n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30000 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.integers(1, 100, n).astype(float),
        }
    )


def _fetch(bars: pd.DataFrame) -> FetchResult:
    return FetchResult(bars=bars.reset_index(drop=True), source="test", rows_read=len(bars))


def _pdir(cfg: AppConfig, month: str, sym: str = SYM, tf: str = "1h") -> Path:
    return PartitionStore(cfg.paths.canonical).partition_dir(tf, sym, month)


def test_partitions_meta_and_quarantine(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 24 * 60)  # Jan + Feb
    feb = bars["ts"].dt.month == 2
    gap = bars.index[feb][100:105]  # 5 missing bars in February
    report = ingest(cfg, _fetch(bars.drop(index=gap)), SYM, "1h")
    assert report.canonical_partitions_written == ["2024-01", "2024-02"]
    assert sorted(report.quarantined) == ["2024-02"]
    jan = _pdir(cfg, "2024-01")
    assert sorted(p.name for p in jan.iterdir()) == ["__complete", "__meta.json", "bars.parquet"]
    meta = json.loads((jan / "__meta.json").read_text())
    assert meta["counts"] == {
        "bars_written": 31 * 24,
        "missing_gaps": 0,
        "filled_bars": 0,
        "outlier_bars": 0,
        "spike_flags": 0,
        "conflict_bars": 0,
        "off_calendar_bars": 0,
    }
    assert meta["last_ts"] == "2024-01-31T23:00:00+00:00"
    frame = pd.read_parquet(jan / "bars.parquet")
    assert list(frame.columns) == [
        "ts",
        "symbol",
        "timeframe",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quality_flag",
    ]
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert set(frame["symbol"]) == {SYM} and set(frame["timeframe"]) == {"1h"}
    assert meta["data_hash"] == bars_hash(frame)
    q = json.loads((_pdir(cfg, "2024-02") / "__quarantine.json").read_text())
    assert q["reason"] == "missing_run_exceeds_max_fill_bars"
    assert q["threshold"] == {"max_fill_bars": 2}
    assert q["owner"] == "data-ops"
    assert q["period"]["start"] == bars["ts"][gap[0]].isoformat()
    assert q["period"]["end"] == bars["ts"][gap[-1]].isoformat()
    fmeta = json.loads((_pdir(cfg, "2024-02") / "__meta.json").read_text())
    assert fmeta["counts"]["missing_gaps"] == 5
    assert fmeta["quarantined"] is True


def test_reingest_same_data_writes_nothing(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 24 * 45)
    ingest(cfg, _fetch(bars), SYM, "1h")
    metas = {m: (_pdir(cfg, m) / "__meta.json").read_bytes() for m in ("2024-01", "2024-02")}
    again = ingest(cfg, _fetch(bars), SYM, "1h")
    assert again.canonical_partitions_written == []
    assert again.raw_partitions_written == []
    assert again.unchanged_bars == len(bars) and again.new_bars == 0
    assert {m: (_pdir(cfg, m) / "__meta.json").read_bytes() for m in metas} == metas


def test_changed_data_updates_partition_and_hash(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 24 * 45)
    ingest(cfg, _fetch(bars), SYM, "1h")
    jan_meta = (_pdir(cfg, "2024-01") / "__meta.json").read_bytes()
    feb_hash = json.loads((_pdir(cfg, "2024-02") / "__meta.json").read_text())["data_hash"]
    corrected = bars.copy()
    i = corrected.index[corrected["ts"] == pd.Timestamp("2024-02-05 10:00", tz="UTC")][0]
    corrected.loc[i, "close"] = corrected.loc[i, "close"] * 1.0001
    corrected.loc[i, "high"] = max(corrected.loc[i, "high"], corrected.loc[i, "close"])
    report = ingest(cfg, _fetch(corrected.iloc[i - 5 : i + 5]), SYM, "1h")
    assert report.updated_bars == 1
    assert report.canonical_partitions_written == ["2024-02"]
    new_hash = json.loads((_pdir(cfg, "2024-02") / "__meta.json").read_text())["data_hash"]
    assert new_hash != feb_hash
    assert (_pdir(cfg, "2024-01") / "__meta.json").read_bytes() == jan_meta


def test_incremental_ingest_fills_gap_at_the_seam(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 24 * 40)
    first, second = bars.iloc[:500], bars.iloc[502:]  # two bars missing between runs
    ingest(cfg, _fetch(first), SYM, "1h")
    assert read_watermark(cfg, SYM, "1h") == first["ts"].iloc[-1]
    report = ingest(cfg, _fetch(second), SYM, "1h")
    assert report.flags["filled"] == 2
    assert report.quarantined == {}
    assert read_watermark(cfg, SYM, "1h") == bars["ts"].iloc[-1]
    frame = pd.read_parquet(_pdir(cfg, "2024-01") / "bars.parquet")
    assert list(frame.loc[frame["quality_flag"] == "filled", "ts"]) == list(
        bars["ts"].iloc[500:502]
    )


def test_duplicates_and_conflicts(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 24 * 20)
    dup = bars.iloc[[10]]
    conf = bars.iloc[[20]].copy()
    conf["close"] *= 1.0002
    conf["high"] = np.maximum(conf["high"], conf["close"])
    feed = pd.concat([bars.iloc[:21], conf, dup, bars.iloc[21:]], ignore_index=True)
    report = ingest(cfg, _fetch(feed), SYM, "1h")
    assert report.duplicates_dropped == 1
    assert report.conflicting_rows == 1
    jan = _pdir(cfg, "2024-01")
    frame = pd.read_parquet(jan / "bars.parquet")
    row = frame[frame["ts"] == bars["ts"].iloc[20]].iloc[0]
    assert row["quality_flag"] == "conflict"
    assert row["close"] == pytest.approx(conf["close"].iloc[0])  # last delivery kept
    excluded = pd.read_parquet(jan / "__excluded.parquet")
    assert list(excluded["reason"]) == ["conflict"]
    assert excluded["close"].iloc[0] == pytest.approx(bars["close"].iloc[20])
    assert json.loads((jan / "__meta.json").read_text())["counts"]["conflict_bars"] == 1
    assert ingest(cfg, _fetch(feed), SYM, "1h").canonical_partitions_written == []


def test_crash_mid_ingest_then_rerun_completes(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 24 * 70)
    seen: list[str] = []

    def fault(step: str) -> None:
        seen.append(step)
        if step == "swapped" and len(seen) > 12:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        ingest(cfg, _fetch(bars), SYM, "1h", fault=fault)
    report = ingest(cfg, _fetch(bars), SYM, "1h")
    assert report.quarantined == {}
    store = PartitionStore(cfg.paths.canonical)
    assert store.months("1h", SYM) == ["2024-01", "2024-02", "2024-03"]
    for month in store.months("1h", SYM):
        files = sorted(p.name for p in _pdir(cfg, month).iterdir())
        assert files == ["__complete", "__meta.json", "bars.parquet"]
    assert not any(p.name.startswith(".") for p in _pdir(cfg, "2024-01").parent.iterdir())


def test_unknown_symbol_and_timeframe(cfg: AppConfig) -> None:
    with pytest.raises(FatalError, match=r"symbol 'XPT/USD' is not in universe\.yaml"):
        ingest(cfg, _fetch(_bars("2024-01-01", 10)), "XPT/USD", "1h")
    with pytest.raises(FatalError, match="timeframe '2h' is not allowed"):
        ingest(cfg, _fetch(_bars("2024-01-01", 10)), SYM, "2h")


@pytest.mark.parametrize(
    ("name", "symbol", "timeframe", "months"),
    [("EURUSD.csv", "EUR/USD", "1h", 11), ("GOOG.csv", "GOOG", "1day", 104)],
)
def test_real_third_party_file_ingests_unchanged(
    cfg: AppConfig, name: str, symbol: str, timeframe: str, months: int
) -> None:
    fetched = FileProvider(third_party_csv(name)).read(timeframe)
    report = ingest(cfg, fetched, symbol, timeframe)
    assert report.rows_rejected == 0
    assert report.missing_bars == 0
    assert report.quarantined == {}
    assert report.flags["outlier"] == 0
    assert len(report.canonical_partitions_written) == months
    total = sum(
        json.loads((p / "__meta.json").read_text())["counts"]["bars_written"]
        for p in PartitionStore(cfg.paths.canonical).symbol_dir(timeframe, symbol).iterdir()
    )
    assert total == report.rows_read
