"""Re-ingesting a corrected file repairs what a bad one did (issue 16): rows an older version
let in, a watermark in the future, months quarantined up to it, rows moved inside a file's
span, and damaged partition files."""

from __future__ import annotations

import json

import pandas as pd

from mlcore.config import AppConfig
from mlcore.data import (
    FetchResult,
    PartitionStore,
    build_catalog,
    ingest,
    read_watermark,
)
from tests.unit.test_ingest import SYM, _bars, _fetch

NOW = pd.Timestamp.now(tz="UTC").floor("h")


def _recent(hours: int = 24 * 20) -> pd.DataFrame:
    """Hourly bars up to the hour before now."""
    bars = _bars("2024-01-01", hours)
    bars["ts"] = pd.date_range(end=NOW - pd.Timedelta(hours=1), periods=hours, freq="h", tz="UTC")
    return bars


def _watermark_file(cfg: AppConfig) -> dict[str, str]:
    path = PartitionStore(cfg.paths.raw).symbol_dir("1h", SYM) / "_watermark.json"
    data: dict[str, str] = json.loads(path.read_text())
    return data


def _damage_with_a_row_from_the_future(cfg: AppConfig, good: pd.DataFrame) -> pd.Timestamp:
    """The archive an older version left after ingesting ``good`` plus one row dated some
    months ahead: that version had no future rule, as an ingest told that now is later."""
    future = (NOW + pd.Timedelta(days=75)).floor("h")
    bad = pd.concat([good, good.iloc[[-1]].assign(ts=future)], ignore_index=True)
    report = ingest(cfg, _fetch(bad), SYM, "1h", now=future + pd.Timedelta(days=1))
    assert report.quarantined, "the damage: every month up to the future row quarantined"
    assert _watermark_file(cfg)["last_ts"] == future.isoformat()
    return future


def test_a_corrected_file_repairs_the_watermark_and_months_a_future_row_damaged(
    cfg: AppConfig,
) -> None:
    """Before: the re-ingest left the watermark in the future and every month up to it
    quarantined (with a row dated 2030: 37 months; dated 2200: 2,112), writing nothing."""
    good = _recent()
    future = _damage_with_a_row_from_the_future(cfg, good)
    canonical = PartitionStore(cfg.paths.canonical)
    assert canonical.months("1h", SYM)[-1] == future.strftime("%Y-%m")
    # Even before the repair a REST ingest would continue after the last real bar.
    assert read_watermark(cfg, SYM, "1h") == good["ts"].iloc[-1]

    report = ingest(cfg, _fetch(good), SYM, "1h", replace_span=True)
    assert report.purged_rows == {"timestamp in the future": 1}
    assert report.raw_partitions_removed == [future.strftime("%Y-%m")]
    assert report.quarantined == {}
    real = sorted({t.strftime("%Y-%m") for t in good["ts"]})
    assert canonical.months("1h", SYM) == real
    assert PartitionStore(cfg.paths.raw).months("1h", SYM) == real
    assert _watermark_file(cfg)["last_ts"] == good["ts"].iloc[-1].isoformat()
    summary = build_catalog(cfg)
    assert (summary.partitions, summary.excluded) == (len(real), 0)
    # The repair is done once: the next identical ingest writes nothing.
    again = ingest(cfg, _fetch(good), SYM, "1h", replace_span=True)
    assert again.canonical_partitions_written == again.raw_partitions_written == []
    assert again.purged_rows == {} and again.canonical_partitions_removed == []


def test_a_watermark_in_the_future_is_read_as_the_last_stored_bar(cfg: AppConfig) -> None:
    good = _bars("2024-01-01", 48)
    ingest(cfg, _fetch(good), SYM, "1h")
    path = PartitionStore(cfg.paths.raw).symbol_dir("1h", SYM) / "_watermark.json"
    path.write_text(json.dumps({"last_ts": "2200-01-01T00:00:00+00:00"}))
    assert read_watermark(cfg, SYM, "1h") == good["ts"].iloc[-1]
    path.write_text("{not json")
    assert read_watermark(cfg, SYM, "1h") == good["ts"].iloc[-1]


def test_rows_an_older_version_let_in_are_purged_at_the_next_ingest(cfg: AppConfig) -> None:
    good = _bars("2024-01-01", 24 * 40)
    ingest(cfg, _fetch(good), SYM, "1h")
    # Rows no rule of today lets in, stored directly as an older version might have.
    store = PartitionStore(cfg.paths.raw)
    jan = store.read_file("1h", SYM, "2024-01", "raw.parquet")
    assert jan is not None
    jan.loc[5, "high"] = jan.loc[5, "low"] / 2  # high < low
    jan.loc[7, "close"] = -1.0
    store.write("1h", SYM, "2024-01", {"raw.parquet": _parquet(jan)})
    report = ingest(cfg, _fetch(good.iloc[24 * 35 :]), SYM, "1h")
    assert report.purged_rows == {"high < low": 1, "non-positive price": 1}
    # Their places are now gaps of one bar, filled, instead of bad prices in the canonical.
    bars = pd.read_parquet(PartitionStore(cfg.paths.canonical).partition_dir("1h", SYM, "2024-01"))
    assert list(bars.loc[[5, 7], "quality_flag"]) == ["filled", "filled"]


def _parquet(frame: pd.DataFrame) -> bytes:
    from mlcore.data._store import to_parquet_bytes

    return to_parquet_bytes(frame)


def test_a_corrected_file_replaces_the_rows_a_misread_one_put_in_its_span(
    cfg: AppConfig,
) -> None:
    """A D/M/Y file read M/D/Y put April 3's bars on March 4; the corrected file is the truth
    between its first and last bar, so the misplaced bars go."""
    good = _bars("2024-03-01", 24 * 61)  # March and April
    misread = good.copy()
    april_3 = misread["ts"].dt.strftime("%m-%d") == "04-03"
    misread.loc[april_3, "ts"] = misread.loc[april_3, "ts"] - pd.Timedelta(days=30)  # Mar 4
    misread = misread.drop_duplicates("ts", keep="last").sort_values("ts")
    ingest(cfg, _fetch(misread), SYM, "1h", replace_span=True)
    report = ingest(cfg, _fetch(good), SYM, "1h", replace_span=True)
    assert report.replaced_rows == 0  # every misplaced bar sat on a time the file delivers
    canonical = PartitionStore(cfg.paths.canonical)
    got = pd.concat(
        [pd.read_parquet(canonical.partition_dir("1h", SYM, m)) for m in ("2024-03", "2024-04")]
    )
    assert got["close"].to_numpy().tolist() == good["close"].tolist()
    assert set(got["quality_flag"]) == {"ok"}


def test_stored_rows_inside_a_file_span_it_no_longer_holds_go_and_others_stay(
    cfg: AppConfig,
) -> None:
    first = _bars("2024-01-01", 24 * 40)
    ingest(cfg, _fetch(first), SYM, "1h", replace_span=True)
    # A second file from Jan 20 to Feb 20 without Jan 25: a file lacking a bar is the truth.
    second = _bars("2024-01-20", 24 * 31, seed=2)
    dropped = second["ts"].dt.strftime("%m-%d") == "01-25"
    report = ingest(cfg, _fetch(second[~dropped]), SYM, "1h", replace_span=True)
    assert report.replaced_rows == 24
    raw = pd.concat(
        PartitionStore(cfg.paths.raw).read_file("1h", SYM, m, "raw.parquet")  # type: ignore[misc]
        for m in ("2024-01", "2024-02")
    )
    assert raw["ts"].min() == first["ts"].iloc[0]  # before the second file's span: kept
    assert not raw["ts"].dt.strftime("%m-%d").eq("01-25").any()
    # Without replace_span (REST pages, the library default) stored rows stay.
    ingest(cfg, _fetch(first), SYM, "1h")
    report = ingest(cfg, _fetch(second[~dropped]), SYM, "1h")
    assert report.replaced_rows == 0
    jan = PartitionStore(cfg.paths.raw).read_file("1h", SYM, "2024-01", "raw.parquet")
    assert jan is not None and jan["ts"].dt.strftime("%m-%d").eq("01-25").sum() == 24


def test_an_emptied_canonical_bars_file_is_rewritten_by_the_next_ingest(cfg: AppConfig) -> None:
    """Before: the manifest was unchanged, so the zero-byte file stayed (until --rewrite)."""
    bars = _bars("2024-01-01", 24 * 40)
    ingest(cfg, _fetch(bars), SYM, "1h")
    path = PartitionStore(cfg.paths.canonical).partition_dir("1h", SYM, "2024-01") / "bars.parquet"
    path.write_bytes(b"")
    report = ingest(cfg, _fetch(bars), SYM, "1h")
    assert report.canonical_partitions_written == ["2024-01"]
    assert len(pd.read_parquet(path)) == 24 * 31


def test_fetch_result_is_unchanged(cfg: AppConfig) -> None:
    bars = _bars("2024-01-01", 30)
    fetched = FetchResult(bars=bars.copy(), source="t", rows_read=30)
    ingest(cfg, fetched, SYM, "1h", replace_span=True)
    pd.testing.assert_frame_equal(fetched.bars, bars)


def test_a_file_with_a_rejected_row_never_removes_the_stored_bar_it_stood_for(
    cfg: AppConfig,
) -> None:
    """Review: the same file again with one row's date mistyped (2014 for 2024, rejected as
    isolated) removed the stored, good bar of that hour ("removed 1 stored row(s) inside the
    file's span") and left a filled bar in its place: one bad row corrupted the archive."""
    from mlcore.data import Reject

    good = _bars("2024-04-01", 24 * 30)
    ingest(cfg, _fetch(good), SYM, "1h", replace_span=True)
    typo = good.index[300]
    fetched = FetchResult(
        bars=good.drop(index=typo).reset_index(drop=True), source="test", rows_read=len(good),
        rejects=[Reject("f.csv", 302, "ts", "isolated: over 31 days from the file's other bars",
                        "2014-04-13 12:00:00")],
    )  # fmt: skip
    report = ingest(cfg, fetched, SYM, "1h", replace_span=True)
    assert report.replaced_rows == 0 and report.replace_withheld
    assert report.flags["filled"] == 0 and report.missing_bars == 0
    raw = PartitionStore(cfg.paths.raw).read_file("1h", SYM, "2024-04", "raw.parquet")
    assert raw is not None and good["ts"].iloc[typo] in set(raw["ts"])
