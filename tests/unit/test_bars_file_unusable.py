"""A bars file that is not a regular file: ``serve`` refuses it at start (exit 2, one line), and a
worker's file source reads nothing from it without blocking (a FIFO would hang ``open``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.serving import FileBarSource
from tests.conftest import CONFIG_ROOT

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]


def _bars(cfg: AppConfig) -> Path:
    path = cfg.paths.archive / cfg.serving.bar_source.file
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_serve_refuses_a_bars_file_that_is_not_a_file(cfg: AppConfig, kind: str) -> None:
    path = _bars(cfg)
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    result = runner.invoke(app, ["serve", "--bars", "file", "--exit-when-idle", "1", *ROOT])
    out = result.stdout + result.stderr
    assert result.exit_code == 2, out
    said = [x for x in out.splitlines() if x.strip() and not x.startswith("{")]
    assert len(said) == 1 and "SERVING_BARS_FILE_UNUSABLE" in said[0] and str(path) in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_the_file_source_reads_nothing_from_a_non_file_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "bars.jsonl"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(FileBarSource(path).read(10, 0)),
                              daemon=True)  # fmt: skip
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the hung open so the test process can end
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("reading the bars file blocked")
    assert got == [[]]
