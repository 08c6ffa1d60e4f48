"""A version goes to approved or deployed only once its files match the checksums recorded at
registration: damaged files are restored from the artifact store first, and when they cannot be
the promotion is refused (exit 1) naming them. The model files are stand-ins (``make_version``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.registry import registry_for
from tests.conftest import CONFIG_ROOT, make_version

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
V = "20250101_0000_abc1234"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, *ROOT])
    return result.exit_code, result.stdout + result.stderr


def _damaged(archive: Path) -> Path:
    folder = make_version(archive / "models", V)
    assert _run("registry", "register", "--model", V, "--notes", "n")[0] == 0
    assert _run("registry", "promote", V, "--to", "candidate", "--notes", "n")[0] == 0
    (folder / "ai1.lgbm.txt").write_bytes(b"evil\n")
    (folder / "ai2.lgbm.txt").unlink()
    return folder


def test_a_damaged_version_is_restored_before_approval(archive: Path, cfg: AppConfig) -> None:
    folder = _damaged(archive)
    code, out = _run("registry", "promote", V, "--to", "approved", "--notes", "n")
    assert code == 0, out
    assert (folder / "ai1.lgbm.txt").read_bytes() == b"tree\n"
    assert (folder / "ai2.lgbm.txt").read_bytes() == b"tree\n"
    assert registry_for(cfg).get(V).status == "approved"


def test_a_damaged_version_that_cannot_be_restored_is_not_promoted(
    archive: Path, cfg: AppConfig
) -> None:
    _damaged(archive)
    shutil.rmtree(cfg.paths.archive / "registry" / "artifacts" / V)  # its archived copy gone too
    for to in ("approved", "deployed"):
        code, out = _run("registry", "promote", V, "--to", to, "--notes", "n")
        assert code == 1, out
        assert "REGISTRY_ARTIFACT_DAMAGED" in out and "ai1.lgbm.txt" in out, out
        assert "ai2.lgbm.txt" in out and f"not promoted to {to}" in out, out
        assert "Traceback" not in out
    assert registry_for(cfg).get(V).status == "candidate"
