"""The README's main job, run as a user runs it: `python -m mlcore demo` in a process of its
own, on a 10-month market with one Optuna trial per model so it stays short, then its data
steps again in process on the same archive: the same files rewrite nothing and every feature
month comes from the cache. (What the demo finds on its full 24-month market is checked on the
shared demo run, in test_demo_outcome.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from mlcore.config import load_config
from mlcore.data import Catalog, build_catalog
from mlcore.demo import DEMO_TIMEFRAME, ingest_files, summarize_pair
from tests.conftest import E2E_TRAINING, REPO, config_with

MONTHS = 8  # 2024-05 to 2024-12 (the fewest months): the quarantined month (2024-05) inside


def _demo(archive: Path, root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SERVICE_ENV", "ARCHIVE_PATH")}
    env["ARCHIVE_PATH"] = str(archive)  # a user's archive: the demo keeps its own
    return subprocess.run(
        [sys.executable, "-m", "mlcore", "demo", "--months", str(MONTHS), "--config-root",
         str(root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_mlcore_demo_runs_as_a_user_runs_it_and_again_changes_nothing(tmp_path: Path) -> None:
    user_archive = tmp_path / "archive"
    root = config_with(tmp_path, {"training_policy": E2E_TRAINING})
    first = _demo(user_archive, root)
    # The demo's own workspace, var/demo of the project holding the configs, with its archive.
    demo = tmp_path / "var" / "demo"
    archive = demo / "archive"
    assert not user_archive.exists()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    out = first.stdout
    caught = re.search(r"planted faults caught: (\d+)/(\d+)", out)
    assert caught is not None and caught.group(1) == caught.group(2) != "0", out
    n_symbols = 6
    partitions = n_symbols * MONTHS
    assert f"catalog: {partitions} partitions, {partitions - 1} included, 1 excluded" in out
    assert "re-ingest of the same files rewrote 0 partition(s)" in out
    assert re.search(r"retrain run [0-9a-f-]{36}: (success|aborted)", out), out
    # Deployed or rejected by the checklist, or (a market this short can leave the canary's
    # two shuffles outside their tolerance) a training blocked and said so.
    assert re.search(
        r"registry: (\d{8}_\d{4}_\w+ is (deployed|rejected)|training blocked: )", out
    ), out
    # Off a terminal, one line per stage with its elapsed time.
    for stage in ("generate", "ingest", "catalog", "features+labels", "retrain flow"):
        assert re.search(rf"^\[ *\d+\.\d s\] {re.escape(stage)}: ", out, re.M), stage
    assert "Finished in state" not in out + first.stderr  # Prefect's chatter is off
    if "serving: the catalog's last" in out:  # the replay ends with the feedback loop once
        loop = re.search(r"feedback loop .*: (\d+) simulated fills of (\d+) served .* (\d+) "
                         r"fills quarantined", out)  # fmt: skip
        assert loop is not None and loop.group(1) == loop.group(2) and loop.group(3) == "0", out
    summary = json.loads((archive / "reports" / "demo_summary.json").read_text())
    assert all(f["caught"] for f in summary["faults"])
    pairs = {p["pair_id"]: p for p in summary["pairs"]}
    months = 3 * MONTHS - 1  # every pair's months but XAU_XAG's quarantined one
    assert sum(p["months_computed"] for p in pairs.values()) == months
    filtered = json.loads((archive / "catalog" / "dataset_index_filtered.json").read_text())
    meta_before = {p: p.read_bytes() for p in (archive / "canonical").rglob("__meta.json")}
    # The data steps again, on the same archive: nothing rewritten, every month from the cache.
    cfg = load_config(demo / "configs", "dev")
    assert cfg.paths.archive == archive
    incoming = {sym: archive / "incoming" / f"{sym.replace('/', '')}_{DEMO_TIMEFRAME}.csv"
                for sym in (r["symbol"] for r in summary["ingest"])}  # fmt: skip
    again = ingest_files(cfg, incoming)
    assert sum(len(r.canonical_partitions_written) for r in again) == 0
    build_catalog(cfg)
    pairs_again = [summarize_pair(cfg, Catalog(cfg), p) for p in cfg.universe.pairs]
    assert sum(p.months_computed for p in pairs_again) == 0
    assert sum(p.months_cached for p in pairs_again) == months
    assert all(p.ai1_events == pairs[p.pair_id]["ai1_events"] for p in pairs_again)
    assert {p: p.read_bytes() for p in (archive / "canonical").rglob("__meta.json")} == meta_before
    index = json.loads((archive / "catalog" / "dataset_index_filtered.json").read_text())
    assert index["catalog_hash"] == filtered["catalog_hash"]
