"""What the demo finds on its market (E2E_DEMO_MONTHS long), read from the shared demo run: every
planted fault caught, the malformed rows rejected by rule, the quarantined month excluded and the
history split there, features and labels for every pair, and the version decided by the adoption
checklist under the real gates."""

from __future__ import annotations

import json

from mlcore.config import AppConfig
from mlcore.demo import DemoResult
from mlcore.registry import registry_for
from tests.e2e.conftest import E2E_DEMO_MONTHS

SYMBOLS = 6


def test_every_planted_fault_is_caught_and_the_market_is_as_planted(
    demo_run: tuple[AppConfig, DemoResult],
) -> None:
    cfg, result = demo_run
    assert result.all_caught and len(result.checks) == 37
    assert sum(len(r.canonical_partitions_written) for r in result.rerun_reports) == 0
    partitions = SYMBOLS * E2E_DEMO_MONTHS  # one per symbol and month; XAG/USD's May excluded
    assert (result.catalog.partitions, result.catalog.included) == (partitions, partitions - 1)
    assert result.report_path is not None
    summary = json.loads(result.report_path.read_text())
    eur = next(r for r in summary["ingest"] if r["symbol"] == "EUR/USD")
    assert eur["rows_rejected"] == 5
    assert set(eur["rejects_by_rule"]) == {
        "unparsable timestamp",
        "timestamp off the 1h grid",
        "non-positive price",
        "high < low",
        "not a finite number",
    }
    pairs = {p["pair_id"]: p for p in summary["pairs"]}
    assert set(pairs) == {"XAU_XAG", "EUR_GBP", "BTC_ETH"}
    # XAG/USD's quarantined month is excluded, so XAU/USD bars of that month find no partner.
    assert pairs["XAU_XAG"]["dropped_bars"]["A"] > 0
    # ... and the history splits there: two segments, each with its own warm-up.
    assert pairs["XAU_XAG"]["segments"] == 2
    assert pairs["EUR_GBP"]["segments"] == 1
    assert pairs["XAU_XAG"]["warm_up_bars"] == 2 * pairs["EUR_GBP"]["warm_up_bars"]
    assert sum(p["months_computed"] for p in pairs.values()) == 3 * E2E_DEMO_MONTHS - 1
    for p in pairs.values():
        assert p["aligned_bars"] > 400 * E2E_DEMO_MONTHS  # hourly, FX closed at weekends
        assert p["ai1_events"] > p["ai1_excluded"] >= 0
        assert 0.0 <= p["ai1_positive_rate"] <= 1.0
        assert 0.0 <= p["ai3_mean_target"] <= 1.0
        assert sum(p["direction_counts"].values()) > 0
    filtered = json.loads((cfg.paths.catalog / "dataset_index_filtered.json").read_text())
    [excluded] = filtered["excluded"]
    assert (excluded["symbol"], excluded["month"]) == ("XAG/USD", "2024-05")


def test_the_demo_run_is_registered_and_decided_by_the_checklist(
    demo_run: tuple[AppConfig, DemoResult],
) -> None:
    cfg, result = demo_run
    outcome = result.retrain
    assert outcome is not None and outcome.publish is not None and result.backtest is not None
    assert outcome.status == "success" and outcome.retries == 0
    reg = registry_for(cfg)
    rec = reg.get(outcome.model_version or "")
    expected = "deployed" if result.backtest.decision == "adopt" else "rejected"
    assert rec.status == outcome.publish.status == expected
    failed = [g["gate"] for g in result.backtest.gates if not g["passed"]]
    if failed:
        assert f"gates failed {failed}" in rec.notes
    [run] = reg.runs()
    assert run["status"] == "success" and run["model_version"] == rec.model_version
    assert run["metrics"]["decision"] == result.backtest.decision
