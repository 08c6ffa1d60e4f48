"""Hostile registry inputs end in one line and the right exit code: a folder name that is not a
version id (exit 2 at register), a file where a version's folder belongs (restore, exit 1), a
registry database that is not one (exit 1) or is a folder (exit 2), a FIFO among a version's
files (verify and restore never block on it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.registry import RegistryError, registry_for
from tests.conftest import CONFIG_ROOT, make_version

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
V = "20250101_0000_abc1234"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, *ROOT])
    return result.exit_code, result.stdout + result.stderr


def _said(out: str) -> list[str]:
    assert "Traceback" not in out and "internal error" not in out, out
    return [x for x in out.splitlines() if x.strip() and not x.startswith("{")]


@pytest.mark.parametrize("name", ["bad\nname", "x\x1b[31m", "a b", "v;rm", "20250101_0000_a b"])
def test_register_refuses_a_folder_name_that_is_no_version_id(
    archive: Path, cfg: AppConfig, name: str
) -> None:
    folder = make_version(archive / "models", name)
    code, out = _run("registry", "register", "--model", str(folder), "--notes", "n")
    assert code == 2, out
    said = _said(out)
    assert "REGISTRY_VERSION_ID_INVALID" in said[0], out
    assert registry_for(cfg).records() == []
    with pytest.raises(RegistryError, match="not a model version name"):
        registry_for(cfg).register(folder, actor="t", notes="n")


def test_restore_when_the_version_folder_is_a_file(archive: Path, cfg: AppConfig) -> None:
    folder = make_version(archive / "models", V)
    assert _run("registry", "register", "--model", V, "--notes", "n")[0] == 0
    shutil.rmtree(folder)
    folder.write_text("in the way")
    code, out = _run("registry", "restore", V)
    assert code == 1, out
    assert "REGISTRY_ARTIFACT_FOLDER_BLOCKED" in _said(out)[0]


def test_a_fifo_among_the_files_is_damaged_never_read(archive: Path, cfg: AppConfig) -> None:
    folder = make_version(archive / "models", V)
    assert _run("registry", "register", "--model", V, "--notes", "n")[0] == 0
    (folder / "ai1.lgbm.txt").unlink()
    os.mkfifo(folder / "ai1.lgbm.txt")
    (folder / "checksums.json").unlink()
    os.mkfifo(folder / "checksums.json")
    code, out = _run("registry", "verify", V)
    assert code == 1 and "not a regular file" in out, out
    code, out = _run("registry", "restore", V)
    assert code == 0, out
    assert (folder / "ai1.lgbm.txt").read_bytes() == b"tree\n"
    assert _run("registry", "verify", V)[0] == 0


def test_a_corrupt_registry_database_is_one_line_exit_1(archive: Path, cfg: AppConfig) -> None:
    db = archive / "registry" / "registry.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(os.urandom(4096))
    code, out = _run("registry", "list")
    assert code == 1, out
    said = _said(out)
    assert len(said) == 1 and "REGISTRY_DB_CORRUPT" in said[0] and str(db) in said[0], out


def test_a_folder_as_registry_database_is_exit_2(archive: Path, cfg: AppConfig) -> None:
    db = archive / "registry" / "registry.db"
    db.mkdir(parents=True)
    code, out = _run("registry", "list")
    assert code == 2, out
    said = _said(out)
    assert len(said) == 1 and "REGISTRY_DB_UNUSABLE" in said[0] and str(db) in said[0], out


def _in_time(fn: object, seconds: float = 10) -> None:
    """Run ``fn`` in a thread; fail (unblocking nothing) if it is still running after
    ``seconds``: a FIFO read would block forever."""
    import threading

    t = threading.Thread(target=fn, daemon=True)  # type: ignore[arg-type]
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked on a FIFO"


@pytest.mark.parametrize("name", ["ai1.lgbm.txt", "run.json", "params.yaml", "checksums.json"])
def test_register_refuses_a_fifo_among_the_files(archive: Path, cfg: AppConfig, name: str) -> None:
    folder = make_version(archive / "models", V)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    got: list[tuple[int, str]] = []
    _in_time(lambda: got.append(_run("registry", "register", "--model", V, "--notes", "n")))
    code, out = got[0]
    assert code == 1 and "not a regular file" in out, out
    assert len(_said(out)) == 1


def test_loading_a_model_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    from mlcore.execution import read_checked

    os.mkfifo(tmp_path / "ai1.lgbm.txt")
    errors: list[Exception] = []

    def load() -> None:
        try:
            read_checked(tmp_path, "ai1.lgbm.txt", {"ai1.lgbm.txt": "0" * 64})
        except ValueError as exc:
            errors.append(exc)

    _in_time(load)
    assert "not a regular file" in str(errors[0])
