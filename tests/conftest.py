"""Shared fixtures: a validated dev configuration whose archive lives in a temp folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import backtesting
import psycopg
import pytest
import structlog
import yaml
from hypothesis import HealthCheck, settings
from prometheus_client import values

from mlcore.config import AppConfig, load_config
from mlcore.observability import MULTIPROC_ENV
from mlcore.observability import _metrics as obs_metrics

REPO = Path(__file__).resolve().parents[1]

# Hypothesis budgets per tier: `dev` for the fast loop, `ci` (more examples, the same ones on
# every run) for `make test`. HYPOTHESIS_PROFILE picks one; CI=true implies `ci`.
_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=_HEALTH,
)  # fmt: skip
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)

_TIERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}
# The modules whose tests read the shared demo run (tests/e2e/conftest.py). Under pytest-xdist
# (`-n 2 --dist loadgroup`) one worker runs them all, so the demo is trained once. The group is
# made by module here because pytest 9 ignores pytest-xdist 3.8's `xdist_group` mark (xdist
# rewrites a node id attribute that pytest 9 no longer reads).
DEMO_MODULES = frozenset(
    f"tests/e2e/{name}.py"
    for name in ("test_backtest", "test_demo_outcome", "test_feedback_demo",
                 "test_feedback_rollback", "test_report_browser",
                 "test_serving", "test_serving_controls", "test_serving_drawdown",
                 "test_serving_faults",
                 "test_serving_hotswap", "test_serving_redis", "test_serving_sigterm",
                 "test_prometheus", "test_train")
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its folder (tests/integration, tests/e2e); the e2e
    tier is slow as a whole. A test reading demo_run outside DEMO_MODULES is refused (it would
    train the demo again on the other worker)."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        if parts and parts[0] in _TIERS:
            item.add_marker(_TIERS[parts[0]])
            if parts[0] == "e2e":
                item.add_marker(pytest.mark.slow)
        module = "/".join(("tests", *parts))
        if "demo_run" in getattr(item, "fixturenames", ()) and module not in DEMO_MODULES:
            raise pytest.UsageError(
                f"{item.nodeid} reads demo_run: add {module} to DEMO_MODULES in tests/conftest.py"
            )


def _shares_a_module_fixture(module: str) -> bool:
    path = REPO / module
    return path.suffix == ".py" and 'scope="module"' in path.read_text(encoding="utf-8")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`: load balancing test by test, in collection order (the e2e tier,
    the longest, first), with DEMO_MODULES as one unit and each module that has a module-scoped
    fixture as one unit (its fixture is then built once, not once per worker)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False
    shared: dict[str, bool] = {}

    class DemoGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module in DEMO_MODULES:
                return "demo"
            if module not in shared:
                shared[module] = _shares_a_module_fixture(module)
            return module if shared[module] else nodeid

    return DemoGroupScheduling(config, log)


CONFIG_ROOT = REPO / "configs"
_ENV_VARS = (
    "SERVICE_ENV",
    "POSTGRES_URL",
    "REDIS_URL",
    "TWELVEDATA_API_KEY",
    "STORAGE_BACKEND",
    "ARCHIVE_PATH",
    "SLACK_WEBHOOK_URL",
    "PAGERDUTY_INTEGRATION_KEY",
    "LOG_LEVEL",
    "MLCORE_CONFIG_ROOT",
    "MLCORE_WORKSPACE",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from a dev environment with none of the service variables set."""
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture(autouse=True)
def _environ_restored() -> Iterator[None]:
    """A command run in the test process sets variables for the processes it starts
    (``PROMETHEUS_MULTIPROC_DIR`` at its archive's metrics folder, Prefect's log levels), which
    monkeypatch does not undo when they were unset before. A later test's subprocess then
    inherited a metrics folder already deleted. Each test gets the environment back as it found
    it, and prometheus_client back in single-process mode if the test had switched it."""
    saved = dict(os.environ)
    yield
    if os.environ.get(MULTIPROC_ENV) != saved.get(MULTIPROC_ENV) and MULTIPROC_ENV not in saved:
        _metrics_unbound()
    os.environ.clear()
    os.environ.update(saved)


def _metrics_unbound() -> None:
    obs_metrics._bound.clear()
    obs_metrics._record_with(values.MutexValue)


@pytest.fixture(autouse=True)
def _structlog_restored() -> Iterator[None]:
    """A CLI run in the test process sets structlog's level (WARNING without --verbose); a
    later test capturing INFO events on the same xdist worker then saw none. Each test gets
    structlog back as it found it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty archive folder, set as ARCHIVE_PATH."""
    path = tmp_path / "archive"
    monkeypatch.setenv("ARCHIVE_PATH", str(path))
    return path


@pytest.fixture
def cfg(archive: Path) -> AppConfig:
    """The dev configuration from configs/, with its archive in a temp folder."""
    return load_config(CONFIG_ROOT, "dev")


def third_party_csv(name: str) -> Path:
    """A real third-party OHLCV file shipped inside the `backtesting` package."""
    return Path(backtesting.__file__).parent / "test" / name


def make_version(root: Path, name: str) -> Path:
    """A model version folder with what the registry reads (the model files are stand-ins)."""
    folder = root / name
    folder.mkdir(parents=True)
    files = {
        "ai1.lgbm.txt": b"tree\n",
        "ai2.lgbm.txt": b"tree\n",
        "ai3.lgbm.txt": b"tree\n",
        "params.yaml": yaml.safe_dump({"timeframe": "1h", "seed": 7}).encode(),
        "metrics.json": json.dumps({"ai1": {"oos_raw": {"auc": 0.61}}}).encode(),
        "run.json": json.dumps({"code_hash": "abc123", "data_hash": "d" * 64, "seed": 7}).encode(),
        "dataset_index_filtered.json": json.dumps(
            {"partitions": [{"month": "2023-01"}, {"month": "2024-12"}]}
        ).encode(),
        "feature_schema.json": b"{}",
    }
    for fname, body in files.items():
        (folder / fname).write_bytes(body)
    sums = {fname: hashlib.sha256(body).hexdigest() for fname, body in files.items()}
    (folder / "checksums.json").write_text(json.dumps(sums))
    return folder


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_url() -> Iterator[str]:
    """A fresh database on this machine's PostgreSQL server, dropped afterwards (a skip outside
    CI when the server does not answer; a failure in CI, where it must)."""
    name = f"mlcore_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 must answer in CI: {exc}")
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 does not answer: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# The e2e runs tune each model with one Optuna trial (the models' own settings), shuffle the
# leakage canary twice instead of five times (five were two thirds of a training's time; one
# alone is too noisy on a year of bars: control AUC 0.549 on the demo's last 12 months) and give the
# direction ensemble's random forest 30 trees instead of 100: the pipeline is under test there,
# not the tuning, the canary's averaging or the forest's size (tests/unit/test_tune.py,
# test_train_binary.py, test_direction.py, test_forest.py).
E2E_TRAINING = {
    "optuna": {"ai1_trials": 1, "ai2_trials": 1, "ai3_trials": 1, "direction_trials": 0},
    "canary": {"repeats": 2},
    "direction": {"random_forest": {"n_estimators": 30}},
}


def config_with(folder: Path, overlays: dict[str, dict[str, Any]]) -> Path:
    """A copy of configs/ under ``folder`` whose dev overlays also change ``overlays``
    ({policy file: {key: value}}; a mapping value is merged into the base's)."""
    root = folder / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    for name, entries in overlays.items():
        path = root / "envs" / "dev" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
        for key, value in entries.items():
            data[key] = {"value": value}
        path.write_text(yaml.safe_dump(data))
    return root


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server and database for the whole session (it takes ~12 s)."""
    from prefect.testing.utilities import prefect_test_harness

    import mlcore.flows  # noqa: F401  (sets Prefect's defaults before Prefect loads)

    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REDIS_MAIN = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """This machine's Redis (a skip outside CI when it does not answer; a failure in CI)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_MAIN, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis on 127.0.0.1:6379 must answer in CI: {exc}")
        pytest.skip(f"Redis on 127.0.0.1:6379 does not answer: {exc}")
    return REDIS_MAIN


class RedisServer:
    """A private redis-server on a free port, persistent (append-only file) unless told not to
    be, which a test may stop and start again: the real server binary, not a fake."""

    def __init__(self, folder: Path, persist: bool = True) -> None:
        self.folder = folder
        self.persist = persist
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Any = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        import subprocess
        import time

        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server must be installed in CI")
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
             "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
