"""The README's main job, run as a user runs it (`python -m mlcore demo`, one Optuna trial per
model so the run stays short), then its data steps again in process on the same archive: the
same files rewrite nothing and every feature month comes from the cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.config import load_config
from mlcore.data import Catalog, build_catalog
from mlcore.demo import DEMO_TIMEFRAME, ingest_files, summarize_pair
from tests.conftest import ONE_TRIAL, REPO, config_with


def _demo(archive: Path, root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SERVICE_ENV", "ARCHIVE_PATH")}
    env["ARCHIVE_PATH"] = str(archive)
    return subprocess.run(
        [sys.executable, "-m", "mlcore", "demo", "--config-root", str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_demo_catches_every_planted_fault_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    root = config_with(tmp_path, {"training_policy": ONE_TRIAL})
    first = _demo(archive, root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    out = first.stdout
    assert "planted faults caught: 37/37" in out
    assert "retrain_status=ok" in out
    assert re.search(r"retrain run [0-9a-f-]{36}: success, 0 retries", out), out
    decision = "deployed" if "adoption decision: ADOPT" in out else "rejected"
    assert re.search(rf"registry: \d{{8}}_\d{{4}}_\w+ is {decision} — adoption checklist", out)
    assert "re-ingest of the same files rewrote 0 partition(s)" in out
    assert "catalog: 144 partitions, 143 included, 1 excluded" in out
    summary = json.loads((archive / "reports" / "demo_summary.json").read_text())
    assert all(f["caught"] for f in summary["faults"])
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
    for p in pairs.values():
        assert p["aligned_bars"] > 10_000
        assert p["ai1_events"] > p["ai1_excluded"] >= 0
        assert 0.0 <= p["ai1_positive_rate"] <= 1.0
        assert 0.0 <= p["ai3_mean_target"] <= 1.0
        assert sum(p["direction_counts"].values()) > 0
    filtered = json.loads((archive / "catalog" / "dataset_index_filtered.json").read_text())
    [excluded] = filtered["excluded"]
    assert (excluded["symbol"], excluded["month"]) == ("XAG/USD", "2024-05")
    meta_before = {p: p.read_bytes() for p in (archive / "canonical").rglob("__meta.json")}
    assert "feature months computed 71, from cache 0" in out
    # The data steps again, on the same archive: nothing rewritten, every month from the cache.
    monkeypatch.setenv("ARCHIVE_PATH", str(archive))
    cfg = load_config(root, "dev")
    incoming = {sym: archive / "incoming" / f"{sym.replace('/', '')}_{DEMO_TIMEFRAME}.csv"
                for sym in (r["symbol"] for r in summary["ingest"])}  # fmt: skip
    again = ingest_files(cfg, incoming)
    assert sum(len(r.canonical_partitions_written) for r in again) == 0
    build_catalog(cfg)
    pairs_again = [summarize_pair(cfg, Catalog(cfg), p) for p in cfg.universe.pairs]
    assert sum(p.months_computed for p in pairs_again) == 0
    assert sum(p.months_cached for p in pairs_again) == 71
    assert all(p.ai1_events == pairs[p.pair_id]["ai1_events"] for p in pairs_again)
    assert {p: p.read_bytes() for p in (archive / "canonical").rglob("__meta.json")} == meta_before
    index = json.loads((archive / "catalog" / "dataset_index_filtered.json").read_text())
    assert index["catalog_hash"] == filtered["catalog_hash"]
