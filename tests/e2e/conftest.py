"""The demo run on the embedded default, shared by the e2e modules that read its outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcore.config import AppConfig, load_config
from mlcore.demo import DemoResult, run_demo
from tests.conftest import E2E_TRAINING, config_with

# The shared demo's market: a year (ending 2024-12, so the quarantined month is in it) instead of
# the demo's 24 months; `make demo` runs the full length.
E2E_DEMO_MONTHS = 12


@pytest.fixture(scope="session")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None
) -> Iterator[tuple[AppConfig, DemoResult]]:
    """The demo (generate, ingest, catalog, features, then the retrain flow: train, backtest,
    publish) on an E2E_DEMO_MONTHS market in a temp archive, trained with E2E_TRAINING: the one
    trained version the e2e tests share."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("SERVICE_ENV", "ARCHIVE_PATH", "MLCORE_CONFIG_ROOT"):
            mp.delenv(var, raising=False)
        mp.setenv("TZ", "UTC")
        folder = tmp_path_factory.mktemp("demo")
        mp.setenv("ARCHIVE_PATH", str(folder / "archive"))
        cfg = load_config(config_with(folder, {"training_policy": E2E_TRAINING}), "dev")
        yield cfg, run_demo(cfg, months=E2E_DEMO_MONTHS)


def linked_archive(demo: AppConfig, tmp: Path) -> Path:
    """An archive of a test's own under ``tmp`` whose data layers (raw, canonical, features,
    snapshots, catalog) link to the demo's: its models, registry and serving are its own."""
    archive = tmp / "archive"
    archive.mkdir()
    for name in ("raw", "canonical", "features", "snapshots", "catalog"):
        src = getattr(demo.paths, name)
        dst = archive / src.relative_to(demo.paths.archive)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.exists():
            dst.symlink_to(src)
    return archive
