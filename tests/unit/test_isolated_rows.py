"""A few rows far from a file's other rows are a mistyped date: rejected with their row numbers,
so they never stretch DQ (and the quarantined months) over the years in between. Checked
against an independent definition (connected components of the "within gap_days" relation),
and end to end through ``mlcore ingest``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import IsolatedRows
from mlcore.data._rules import isolated_rows
from tests.conftest import CONFIG_ROOT

DAY_NS = 86_400 * 1_000_000_000
runner = CliRunner()


def _by_components(ts_ns: np.ndarray, valid: np.ndarray, policy: IsolatedRows) -> np.ndarray:
    """Union-find over every pair of valid rows closer than the gap: O(n²), no sorting."""
    idx = [int(i) for i in np.flatnonzero(valid)]
    parent = {i: i for i in idx}

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a in idx:
        for b in idx:
            if abs(int(ts_ns[a]) - int(ts_ns[b])) <= policy.gap_days * DAY_NS:
                parent[root(a)] = root(b)
    sizes: dict[int, int] = {}
    for i in idx:
        sizes[root(i)] = sizes.get(root(i), 0) + 1
    out = np.zeros(len(ts_ns), dtype=bool)
    if not sizes or max(sizes.values()) <= policy.max_bars:
        return out
    for i in idx:
        out[i] = sizes[root(i)] <= policy.max_bars
    return out


@given(
    days=st.lists(st.integers(0, 4000), min_size=0, max_size=40),
    valid_bits=st.lists(st.booleans(), min_size=40, max_size=40),
    max_bars=st.integers(1, 5),
    gap_days=st.integers(1, 400),
)
def test_isolated_rows_agrees_with_connected_components(
    days: list[int], valid_bits: list[bool], max_bars: int, gap_days: int
) -> None:
    ts_ns = np.asarray(days, dtype=np.int64) * DAY_NS
    valid = np.asarray(valid_bits[: len(days)], dtype=bool)
    policy = IsolatedRows(max_bars=max_bars, gap_days=gap_days)
    got = isolated_rows(ts_ns, valid, policy)
    assert not (got & ~valid).any()  # only valid rows are judged
    assert np.array_equal(got, _by_components(ts_ns, valid, policy))


def _ingest(path: Path) -> tuple[int, str]:
    result = runner.invoke(
        app, ["--config-root", str(CONFIG_ROOT), "ingest", "--path", str(path), "--symbol",
              "XAU/USD", "--timeframe", "1h"],
    )  # fmt: skip
    return result.exit_code, result.output


def test_a_mistyped_year_is_rejected_and_quarantines_nothing(archive: Path, tmp_path: Path) -> None:
    """Before: one row dated 2014 in a file of 2024 bars made 121 months, 120 of them
    quarantined as missing."""
    ts = pd.date_range("2024-01-02", periods=48, freq="h")
    close = 2000 + np.arange(48) * 0.1
    frame = pd.DataFrame(
        {"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "open": close, "high": close + 1,
         "low": close - 1, "close": close, "volume": 10}
    )  # fmt: skip
    frame.loc[10, "timestamp"] = "2014-01-02 10:00:00"
    path = tmp_path / "typo.csv"
    frame.to_csv(path, index=False)
    code, out = _ingest(path)
    assert code == 0, out
    assert "isolated: over 31 days" in out and "12" in out, out  # CSV line 12 is frame row 10
    months = sorted(p.name for p in (archive / "canonical" / "1h" / "XAU_USD").iterdir())
    assert months == ["2024-01"]
    # The row alone, in a file of its own, is accepted: the rule never judges a lone run.
    alone = tmp_path / "alone.csv"
    frame.iloc[[10]].to_csv(alone, index=False)
    code, out = _ingest(alone)
    assert code == 0 and "isolated" not in out, out
