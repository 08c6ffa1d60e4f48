"""``PROMETHEUS_MULTIPROC_DIR`` as an operator (or a leaked environment) may leave it: the
workers build their collectors at import, so a missing folder had ended ``import
mlcore.serving`` in a traceback from inside prometheus_client (a CI run saw it). The import
in a fresh process with a missing folder is in test_serving_imports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import values

from mlcore.errors import ConfigError
from mlcore.observability import MULTIPROC_ENV
from mlcore.observability._metrics import _env_folder_ready


def test_a_missing_folder_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "gone" / "metrics"
    monkeypatch.setenv(MULTIPROC_ENV, str(folder))
    _env_folder_ready()
    assert folder.is_dir()
    assert os.environ[MULTIPROC_ENV] == str(folder)


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_value_is_unset(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # prometheus_client had read it as the working folder and written its files there.
    monkeypatch.setenv(MULTIPROC_ENV, value)
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    _env_folder_ready()
    assert MULTIPROC_ENV not in os.environ
    assert values.ValueClass is values.MutexValue


def test_a_folder_that_cannot_be_made_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(MULTIPROC_ENV, str(blocker / "metrics"))
    with pytest.raises(ConfigError) as err:
        _env_folder_ready()
    assert err.value.code == "CONFIG_ENV_INVALID"
    assert err.value.message == (
        f"PROMETHEUS_MULTIPROC_DIR={str(blocker / 'metrics')!r}: the metrics folder cannot be "
        "made (Not a directory); point it at a writable folder or unset it"
    )
