"""Shared fixtures: a validated dev configuration whose archive lives in a temp folder."""

from __future__ import annotations

from pathlib import Path

import backtesting
import pytest

from mlcore.config import AppConfig, load_config

REPO = Path(__file__).resolve().parents[1]
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
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from a dev environment with none of the service variables set."""
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TZ", "UTC")


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
