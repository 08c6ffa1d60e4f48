"""benchmarks/bench_drift.py's --quick path runs and reports every cell it measures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_drift import main


def test_quick_run_reports_false_alarms_and_delays(capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--quick", "--json"])
    fa = result["false_alarms"]
    assert isinstance(fa, dict) and set(fa) == {"ar1", "real_bootstrap"}
    for cells in fa.values():
        alarms, trials, exceed, tests = cells["100"]
        assert trials == 10 and 0 <= alarms <= trials and tests == 80 and 0 <= exceed <= tests
    delays = result["delays"]
    assert isinstance(delays, dict) and set(delays) == {"mean_0.5sd", "vol_1.5x", "corr_break"}
    # The correlation break is large: found within the quick horizon every time.
    assert all(d is not None and d <= 400 for d in delays["corr_break"])
    assert '"false_alarms"' in capsys.readouterr().out
