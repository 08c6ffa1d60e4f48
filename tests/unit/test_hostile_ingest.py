"""Hostile `ingest` input (reviewer's findings): one line, the right exit code, nothing lost."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.data._store import symbol_dirname
from mlcore.errors import ConfigError, FatalError
from tests.conftest import CONFIG_ROOT

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--config-root", str(CONFIG_ROOT), *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def _csv(path: Path, start: str, hours: int) -> Path:
    ts = pd.date_range(start, periods=hours, freq="h")
    close = 2000 + np.cumsum(np.random.default_rng(0).normal(0, 0.5, hours))
    frame = pd.DataFrame(
        {"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "open": close, "high": close + 1,
         "low": close - 1, "close": close, "volume": 10}
    )  # fmt: skip
    frame.to_csv(path, index=False)
    return path


def _ingest(path: Path, symbol: str = "XAU/USD", *extra: str) -> tuple[int, str]:
    return _run("ingest", "--path", str(path), "--symbol", symbol, "--timeframe", "1h", *extra)


def _stored(archive: Path) -> list[str]:
    return sorted(p.name for p in (archive / "canonical" / "1h").iterdir())


@pytest.mark.parametrize("symbol", [".", "..", "", " ", "A/../..", "A" * 300, "XAU\x1b[2J", "../x"])
def test_a_symbol_that_is_no_symbol_is_refused_and_deletes_nothing(
    archive: Path, tmp_path: Path, symbol: str
) -> None:
    good = _csv(tmp_path / "good.csv", "2024-01-02", 48)
    assert _ingest(good)[0] == 0
    code, out = _ingest(good, symbol, "--calendar", "fx")
    assert code == 2, out
    assert "DATA_SYMBOL_INVALID" in out and "Traceback" not in out
    assert _stored(archive) == ["XAU_USD"]


@pytest.mark.parametrize("name", ["", ".", "..", "a\\b", "x" * 65, "a\x00b"])
def test_storage_refuses_a_folder_name_outside_the_timeframe(name: str) -> None:
    with pytest.raises(ConfigError, match="DATA_SYMBOL_INVALID"):
        symbol_dirname(name)


def test_unknown_symbol_is_refused_before_the_file_is_read(archive: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01 not a csv")
    code, out = _ingest(bad, "FOO")
    assert code == 2 and "DATA_SYMBOL_UNKNOWN" in out, out


def test_a_stray_old_row_neither_erases_history_nor_is_accepted(
    archive: Path, tmp_path: Path
) -> None:
    """Before: rows 1990-01-01 and 2024-03-29 23:00 removed every stored row of Jan-Mar."""
    good = _csv(tmp_path / "good.csv", "2024-01-01", 24 * 89)
    assert _ingest(good)[0] == 0
    lines = good.read_text().splitlines()
    stray = tmp_path / "stray.csv"
    for old in ("1678-01-02 00:00:00", "1969-12-31 23:00:00", "1990-01-01 00:00:00"):
        stray.write_text("\n".join([lines[0], f"{old},1,2,1,1,1", lines[-1]]) + "\n")
        code, out = _ingest(stray)
        assert code == 0 and "removed" not in out, out
        assert ("before 1970" in out) == (old < "1970"), out
    raw = pd.read_parquet(archive / "raw" / "1h" / "XAU_USD")
    assert len(raw) == 24 * 89 + 1  # the 1990 row added, nothing removed


def test_a_sparse_file_replaces_only_where_it_is_dense(archive: Path, tmp_path: Path) -> None:
    good = _csv(tmp_path / "good.csv", "2024-01-01", 24 * 60)
    assert _ingest(good)[0] == 0
    lines = good.read_text().splitlines()
    sparse = tmp_path / "sparse.csv"
    sparse.write_text("\n".join([lines[0], lines[1], lines[-1]]) + "\n")  # Jan 1 and Feb 29
    code, out = _ingest(sparse)
    assert code == 0 and "removed" not in out, out
    assert len(pd.read_parquet(archive / "raw" / "1h" / "XAU_USD")) == 24 * 60


@pytest.mark.parametrize(
    "option",
    [
        ["ingest", "--symbol", "XAU/USD", "--start", "0001-01-01T00:00+14:00"],
        ["ingest", "--symbol", "XAU/USD", "--end", "9999-12-31T23:00-05:00"],
        ["ingest", "--symbol", "XAU/USD", "--start", "0001-01-01"],
        ["flows", "status", "--limit", "9" * 30],
        ["serve", "--exit-when-idle", "nan"],
        ["serve", "--workers", "9" * 30],
    ],
)
def test_an_out_of_range_time_or_number_option_is_a_usage_error(
    archive: Path, option: list[str]
) -> None:
    code, out = _run(*option)
    assert code == 2 and "CLI_ARGUMENT_INVALID" in out and "Traceback" not in out, out


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_a_fifo_device_or_overlong_name_as_path_is_refused_without_hanging(
    archive: Path, tmp_path: Path
) -> None:
    for path in (_fifo(tmp_path / "f.csv"), Path("/dev/zero"), tmp_path / ("A" * 300 + ".csv")):
        code, out = _ingest(path)
        assert code == 2 and "DATA_FILE_UNUSABLE" in out, out
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(2000)) + "\n" + "1," * 1999 + "1\n")
    code, out = _ingest(wide)
    assert code == 65 and "DATA_FILE_SCHEMA" in out and "2,000 columns" in out, out


def test_a_fifo_as_a_policy_file_is_refused_without_hanging(tmp_path: Path) -> None:
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    storage = root / "base" / "storage.yaml"
    storage.unlink()
    _fifo(storage)
    result = runner.invoke(app, ["config", "check", "--config-root", str(root)])
    assert result.exit_code == 2 and "a FIFO, not a regular file" in result.output


def test_a_fifo_or_deeply_nested_meta_is_an_unreadable_partition(
    archive: Path, tmp_path: Path
) -> None:
    assert _ingest(_csv(tmp_path / "good.csv", "2024-01-02", 24 * 40))[0] == 0
    jan, feb = (archive / "canonical" / "1h" / "XAU_USD" / m for m in ("2024-01", "2024-02"))
    (jan / "__meta.json").unlink()
    _fifo(jan / "__meta.json")
    (feb / "__meta.json").write_text("[" * 100_000)
    code, out = _run("catalog", "build")
    assert code == 65 and "CATALOG_PARTITION_UNREADABLE" in out and "Traceback" not in out, out
    assert "2024-01" in out and "2024-02" in out


def test_a_copied_or_mislabelled_partition_is_left_out_of_the_catalog(
    archive: Path, tmp_path: Path
) -> None:
    assert _ingest(_csv(tmp_path / "good.csv", "2024-01-02", 24 * 40))[0] == 0
    sym = archive / "canonical" / "1h" / "XAU_USD"
    shutil.copytree(sym / "2024-01", sym / "2024-07")
    other = archive / "canonical" / "1h" / "XAG_USD"
    shutil.copytree(sym / "2024-02", other / "2024-02")
    code, out = _run("catalog", "build")
    assert code == 65 and "CATALOG_PARTITION_UNREADABLE" in out, out
    assert "2024-07" in out and "XAG_USD" in out and "copied or moved" in out
    index = pd.read_parquet(next(archive.rglob("dataset_index.parquet")))
    assert len(index) == 2 and set(index["symbol"]) == {"XAU/USD"}


@pytest.mark.parametrize("second", ["close", "Close", " CLOSE"])
def test_a_column_given_twice_is_refused_naming_both(
    archive: Path, tmp_path: Path, second: str
) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(f"timestamp,open,high,low,close,{second},volume\n2024-01-02,1,2,1,1,2,3\n")
    code, out = _ingest(path)
    assert code == 65 and "DATA_FILE_SCHEMA" in out and "ambiguous columns" in out, out


def test_a_parquet_column_given_twice_is_refused_on_one_line(archive: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = [pa.array([1.0])] * 6
    names = ["timestamp", "open", "high", "low", "close", "close"]
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays(cols, names=names), path)
    code, out = _ingest(path)
    assert code == 65 and "ambiguous columns" in out, out
    assert len({line for line in out.splitlines() if line.startswith("error ")}) == 1


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32"), ("utf-32-be", "UTF-32")],
)
def test_a_utf16_or_utf32_file_is_named_as_such(
    archive: Path, tmp_path: Path, encoding: str, name: str
) -> None:
    path = _csv(tmp_path / "wide.csv", "2024-01-02", 3)
    text = path.read_text()
    bom = "\ufeff" if encoding.endswith("-be") else ""  # utf-16/utf-32 write their own mark
    path.write_bytes((bom + text).encode(encoding))
    code, out = _ingest(path)
    errors = {line for line in out.splitlines() if line.startswith("error ")}
    assert code == 65, out
    assert errors == {
        f"error DATA_FILE_MALFORMED: {path}: the file is {name} (BOM): save it as UTF-8"
    }


def test_a_huge_cell_is_echoed_cut(archive: Path, tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"  # the longest a line may be: cut in every echo
    path.write_text("timestamp,open,high,low,close,volume\n" + "x" * 60_000 + ",1,2,1,1,1\n")
    code, out = _ingest(path)
    assert code == 65 and "60,000 characters" in out and len(out) < 5_000, out[:500]
    report = json.loads(next((archive / "reports" / "ingest").glob("*.json")).read_text())
    assert len(json.dumps(report)) < 5_000


def _errors(out: str) -> list[str]:  # the CLI runner mixes stdout and stderr
    return sorted({line for line in out.splitlines() if line.startswith("error ")})


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("2024-01-02 00:00:00,1,2,1,1,1\n" * 3 + "x" * 1_000_000 + ",1,2,1,1,1\n", 5),
        ("2024-01-02 00:00:00,1,2,1,1,1\n" * 200_000 + "1," * 40_000 + "1", 200_002),
        ('2024-01-02 00:00:00,"' + "x\n" * 100_000 + '",2,1,1,1\n', 65_538),
    ],
    ids=["one-long-line", "last-line-unterminated", "a-quoted-cell-over-many-lines"],
)
def test_a_line_or_cell_over_64_kib_is_refused_before_pandas_reads_it(
    archive: Path, tmp_path: Path, body: str, line: int
) -> None:
    """Review: a 200 MB cell took pandas 1.3 GB (and 50 s) to read; a line (or a quoted cell)
    over 64 KiB is now refused by a streamed check before pandas sees the file."""
    path = tmp_path / "long.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + body)
    code, out = _ingest(path)
    assert code == 65, out[:500]
    [error] = _errors(out)
    assert error.startswith(f"error DATA_FILE_LINE_TOO_LONG: {path}: line {line:,} ")
    assert "bytes allowed" in error and len(error) < 300


def test_a_file_over_max_file_bytes_is_refused_naming_size_and_bound(
    archive: Path, tmp_path: Path
) -> None:
    """Review: large regular files had no size limit; pipeline_policy max_file_bytes bounds
    a CSV and a Parquet (its data also uncompressed)."""
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    policy = root / "base" / "pipeline_policy.yaml"
    policy.write_text(policy.read_text().replace("value: 1073741824", "value: 5000"))
    csv_path = _csv(tmp_path / "big.csv", "2024-01-02", 200)
    parquet_path = tmp_path / "big.parquet"
    pd.read_csv(csv_path).to_parquet(parquet_path)
    for path in (csv_path, parquet_path):
        result = runner.invoke(
            app, ["--config-root", str(root), "ingest", "--path", str(path), "--symbol",
                  "XAU/USD", "--timeframe", "1h"],
        )  # fmt: skip
        assert result.exit_code == 65, result.output
        size = f"{path.stat().st_size:,} bytes"
        assert _errors(result.output) == [
            f"error DATA_FILE_TOO_LARGE: {path}: {size}, over the 5,000 allowed "
            "(pipeline_policy max_file_bytes)"
        ]
    assert _ingest(csv_path)[0] == 0  # the shipped bound (1 GiB) takes it


def test_a_parquet_too_large_decoded_or_with_a_huge_cell_is_refused(tmp_path: Path) -> None:
    """A small Parquet of compressed repeats may decode to gigabytes: its row groups are read
    one at a time and refused once over the bound, or when a text cell is over 64 KiB."""
    from mlcore.data._file import read_table
    from mlcore.errors import BadDataError

    repeats = tmp_path / "repeats.parquet"
    pd.DataFrame({"timestamp": ["2024-01-02 00:00:00"] * 100_000, "open": 1.0}).to_parquet(
        repeats, row_group_size=10_000
    )
    assert repeats.stat().st_size < 20_000
    with pytest.raises(BadDataError, match=r"DATA_FILE_TOO_LARGE: .* of data (once decoded|unc)"):
        read_table(repeats, max_bytes=200_000)
    cell = tmp_path / "cell.parquet"
    pd.DataFrame({"timestamp": ["2024-01-02 00:00:00"], "open": ["x" * 100_000]}).to_parquet(cell)
    with pytest.raises(BadDataError, match=r"LINE_TOO_LONG: .*'open': a cell of 100,000 bytes"):
        read_table(cell)


@pytest.mark.parametrize("damage", ["fifo", "nested", "list"])
def test_an_unusable_filtered_index_or_watermark_is_named_not_hung_on(
    archive: Path, tmp_path: Path, damage: str
) -> None:
    from mlcore.config import load_config
    from mlcore.data import Catalog, read_watermark

    assert _ingest(_csv(tmp_path / "good.csv", "2024-01-02", 48))[0] == 0
    assert _run("catalog", "build")[0] == 0
    cfg = load_config(CONFIG_ROOT, "dev")
    filtered = next(archive.rglob("dataset_index_filtered.json"))
    mark = next(archive.rglob("_watermark.json"))
    for path in (filtered, mark):
        path.unlink()
        if damage == "fifo":
            _fifo(path)
        else:
            path.write_text("[" * 100_000 if damage == "nested" else "[1]")
    with pytest.raises(FatalError, match="CATALOG_INDEX_UNREADABLE"):
        Catalog(cfg)
    assert read_watermark(cfg, "XAU/USD", "1h") is not None  # taken from the stored bars


def test_rows_before_the_configured_earliest_bar_are_rejected(
    archive: Path, tmp_path: Path
) -> None:
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    policy = root / "base" / "pipeline_policy.yaml"
    policy.write_text(policy.read_text().replace("value: 1970-01-01", "value: 2000-01-01"))
    good = _csv(tmp_path / "good.csv", "2024-01-02", 48)
    lines = good.read_text().splitlines()
    stray = tmp_path / "stray.csv"
    stray.write_text("\n".join([lines[0], "1990-01-01 00:00:00,1,2,1,1,1", *lines[1:]]) + "\n")
    result = runner.invoke(
        app, ["--config-root", str(root), "ingest", "--path", str(stray), "--symbol", "XAU/USD",
              "--timeframe", "1h"],
    )  # fmt: skip
    assert result.exit_code == 0 and "timestamp before 2000-01-01" in result.output
    assert _stored(archive) == ["XAU_USD"]
    assert sorted(p.name for p in (archive / "canonical" / "1h" / "XAU_USD").iterdir()) == [
        "2024-01"
    ]


def test_a_fifo_left_in_a_partition_does_not_hang_the_next_ingest(
    archive: Path, tmp_path: Path
) -> None:
    good = _csv(tmp_path / "good.csv", "2024-01-02", 48)
    assert _ingest(good)[0] == 0
    raw = archive / "raw" / "1h" / "XAU_USD" / "2024-01" / "raw.parquet"
    raw.unlink()
    _fifo(raw)
    code, out = _ingest(good)
    assert code == 65 and "STORAGE_PARTITION_CORRUPT" in out and "FIFO" in out, out


def test_a_fifo_as_a_canonical_manifest_is_rewritten_not_blocked_on(
    archive: Path, tmp_path: Path
) -> None:
    good = _csv(tmp_path / "good.csv", "2024-01-02", 48)
    assert _ingest(good)[0] == 0
    meta = archive / "canonical" / "1h" / "XAU_USD" / "2024-01" / "__meta.json"
    meta.unlink()
    _fifo(meta)
    code, out = _ingest(good)
    assert code == 0, out
    assert meta.is_file() and json.loads(meta.read_text())["month"] == "2024-01"


def test_an_absurd_volume_is_rejected_with_its_row(archive: Path, tmp_path: Path) -> None:
    # Found by review: a volume of 1e308 was stored, and the features' 20-bar sums of volume
    # (the VWAP gap, the volume ratio) overflowed to inf.
    path = _csv(tmp_path / "bars.csv", "2024-01-02", 48)
    frame = pd.read_csv(path)
    frame["volume"] = frame["volume"].astype(float)
    frame.loc[10, "volume"] = 1e308
    frame.to_csv(path, index=False)
    code, out = _ingest(path)
    assert code == 0 and "volume over 1e+15" in out, out
    assert "47 accepted" in out or "1 rejected" in out, out
