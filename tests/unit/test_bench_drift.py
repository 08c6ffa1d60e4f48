"""benchmarks/bench_drift.py's --quick path runs and reports every cell it measures."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_drift.py"


def _bench_main() -> Callable[[list[str]], dict[str, Any]]:
    """The benchmark's main, loaded from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_drift", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_drift"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    main: Callable[[list[str]], dict[str, Any]] = module.main
    return main


def test_quick_run_reports_false_alarms_and_delays(capsys: pytest.CaptureFixture[str]) -> None:
    result = _bench_main()(["--quick", "--json"])
    fa = result["false_alarms"]
    assert isinstance(fa, dict) and set(fa) == {"ar1", "real_bootstrap"}
    for cells in fa.values():
        alarms, trials, exceed, tests, any_rates, single_rates = cells["100"]
        assert trials == 10 and 0 <= alarms <= trials and tests == 80 and 0 <= exceed <= tests
        # one training window: its rates are the pooled ones
        assert any_rates == [alarms / trials] and single_rates == [exceed / tests]
    assert result["training_bars"]["100"] >= 4 * 100  # the policy's training-to-live ratio
    delays = result["delays"]
    assert isinstance(delays, dict) and set(delays) == {"mean_0.5sd", "vol_1.5x", "corr_break"}
    # The correlation break is large: found within the quick horizon every time.
    assert all(d is not None and d <= 400 for d in delays["corr_break"])
    assert '"false_alarms"' in capsys.readouterr().out
