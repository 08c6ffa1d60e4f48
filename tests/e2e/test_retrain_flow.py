"""One scheduled retraining, end to end on the demo's market: a transient failure retried and
recorded, then catalog → features → train → θ → backtest → publish, leaving a deployed version
with its full lineage, archived, and serving told (file and the real Redis).

This test opens every gate of the version's own figures (Sharpe, drawdown, trades per year,
Deflated Sharpe, PBO: a year of the demo's synthetic market clears few of them; the gates
themselves are tested in test_backtest*): what is under test here is the chain, not the
market. The demo's own run under the real gates is checked in test_demo_outcome.py."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import mlcore.flows._tasks as flow_tasks
from mlcore.config import AppConfig, TaskRunnerPolicy, load_config
from mlcore.data import Catalog, build_catalog
from mlcore.demo import prepare_market
from mlcore.flows import SERVING_CHANNEL, run_retrain, task_runner
from mlcore.registry import registry_for
from mlcore.training import LabelledPair, label_pair
from tests.conftest import CONFIG_ROOT, E2E_TRAINING, config_with

pytestmark = pytest.mark.usefixtures("prefect_harness")

REDIS_URL = "redis://127.0.0.1:6379/0"
RETRAIN_MONTHS = 12  # the shared demo's length (tests/e2e/conftest.py): the chain is under test


@pytest.fixture(scope="module")
def data_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo's data steps alone (generated market, ingest, catalog) in an archive of this
    module's own: these tests retrain, so they need no trained demo and run beside it."""
    folder = tmp_path_factory.mktemp("retrain-data")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("SERVICE_ENV", "MLCORE_CONFIG_ROOT", "REDIS_URL"):
            mp.delenv(var, raising=False)
        mp.setenv("ARCHIVE_PATH", str(folder / "archive"))
        cfg = load_config(config_with(folder, {"training_policy": E2E_TRAINING}), "dev")
        prepare_market(cfg, months=RETRAIN_MONTHS)
        build_catalog(cfg)
        yield folder / "archive"


def _fresh_archive(source: Path, target: Path) -> None:
    """The prepared data layers (no models, reports or registry) in a new archive."""
    for layer in ("raw", "canonical", "catalog"):
        shutil.copytree(source / layer, target / layer)


def _redis_or_fail() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis on 127.0.0.1:6379 must answer in CI: {exc}")
        pytest.skip(f"Redis on 127.0.0.1:6379 does not answer: {exc}")
    return client


def test_a_retrain_run_goes_end_to_end_to_a_deployed_version(
    data_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    _fresh_archive(data_archive, archive)
    client = _redis_or_fail()
    client.delete(SERVING_CHANNEL)
    monkeypatch.setenv("ARCHIVE_PATH", str(archive))
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    root = config_with(tmp_path, {
        "backtest_policy": {"gates": {"min_sharpe": -100.0, "max_drawdown": 1.0,
                                      "min_trades_per_year": 0.0, "min_deflated_sharpe": 0.0,
                                      "max_pbo": 1.0}},
        "retrain_policy": {"retrain_retry_delay_minutes": 0.001},
        "training_policy": E2E_TRAINING,
    })  # fmt: skip
    cfg = load_config(root, "dev")
    # A transient fault: the first catalog update fails (as a full disk or a lost mount would).
    calls: list[int] = []
    real = flow_tasks.build_catalog

    def flaky(c: AppConfig) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(c)

    monkeypatch.setattr(flow_tasks, "build_catalog", flaky)
    pubsub = client.pubsub()
    pubsub.subscribe(SERVING_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscription's confirmation

    outcome = run_retrain(cfg)

    assert len(calls) == 2
    assert outcome.status == "success", outcome.message
    assert outcome.retries == 1
    assert outcome.backtest is not None and outcome.backtest.decision == "adopt"
    assert outcome.publish is not None and outcome.publish.status == "deployed"
    reg = registry_for(cfg)
    [run] = reg.runs()
    assert run["status"] == "success" and run["retry_count"] == 1
    assert run["error_message"].startswith("update_catalog: OSError")  # the retried failure
    deployed = reg.deployed()
    assert deployed is not None and deployed.model_version == outcome.model_version
    # Full lineage: data, code, seed, θ, train period, every file's checksum, archived copy.
    model_run = json.loads((reg.served_folder(deployed.model_version) / "run.json").read_text())
    assert deployed.data_hash == model_run["data_hash"] and len(deployed.data_hash) == 64
    assert deployed.code_hash == model_run["code_hash"] != "unknown"
    assert deployed.seed == cfg.training.seed
    theta = outcome.backtest.theta_run.stabilised.theta
    assert (deployed.theta1, deployed.theta2) == pytest.approx(theta, abs=1e-4)
    assert set(deployed.checksums) >= {"ai1.lgbm.txt", "ai2.lgbm.txt", "ai3.lgbm.txt"}
    assert reg.verify(deployed.model_version) == {}
    assert reg.store is not None and deployed.model_version in reg.store.versions()
    events = [h["event"] for h in reg.history(deployed.model_version)]
    assert events[0] == "MODEL_REGISTERED" and events.count("MODEL_STATUS") == 3
    assert "adoption checklist passed" in deployed.notes
    # Serving was told: the notice file and Redis (key and channel).
    notice = json.loads((archive / "serving" / "deployed.json").read_text())
    assert notice["model_version"] == deployed.model_version
    assert json.loads(client.get(SERVING_CHANNEL) or b"{}") == notice
    message = pubsub.get_message(timeout=5)
    assert message is not None and json.loads(message["data"]) == notice
    pubsub.close()


@task(cache_policy=NO_CACHE)
def _pid_and_features(cfg: AppConfig, pair_id: str, timeframe: str) -> tuple[LabelledPair, int]:
    return flow_tasks.pair_features.fn(cfg, pair_id, timeframe), os.getpid()


def test_per_pair_tasks_run_on_a_dask_cluster_of_processes(
    data_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dask task runner (a local cluster of two worker processes) gives the same labelled
    pairs as labelling in process."""
    monkeypatch.setenv("ARCHIVE_PATH", str(data_archive))
    cfg = load_config(CONFIG_ROOT, "dev")
    runner = task_runner(TaskRunnerPolicy(kind="dask", max_workers=2, dask_address=None))
    assert type(runner).__name__ == "DaskTaskRunner"

    @flow(task_runner=runner)
    def features_on_dask() -> dict[str, tuple[LabelledPair, int]]:
        futures = {
            p.pair_id: _pid_and_features.submit(cfg, p.pair_id, "1h") for p in cfg.universe.pairs
        }
        return {k: f.result() for k, f in futures.items()}

    got = features_on_dask()
    assert os.getpid() not in {pid for _, pid in got.values()}  # ran in worker processes
    cat = Catalog(cfg)
    for pair in cfg.universe.pairs:
        lp, _ = got[pair.pair_id]
        local = label_pair(cfg, cat, pair, "1h")
        assert lp.events.equals(local.events)
        assert lp.features.equals(local.features)
