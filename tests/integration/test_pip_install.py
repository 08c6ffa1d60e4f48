"""The usual install route works: a fresh venv, `pip install -c requirements/lock.txt .`, then
`mlcore --help` and an import of every subpackage, with nothing of the dev tools in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

_IMPORT_ALL = """
import importlib, pkgutil, mlcore
names = [m.name for m in pkgutil.walk_packages(mlcore.__path__, "mlcore.")
         if m.ispkg and not m.name.startswith("mlcore.registry.migrations")]
for name in names:
    importlib.import_module(name)
print(len(names), "subpackages imported from", mlcore.__file__)
"""


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_pip_installs_the_package_into_a_fresh_venv(tmp_path: Path) -> None:
    # A copy of what a source distribution holds, so the build leaves nothing in the checkout.
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, project / name)
    shutil.copytree(
        REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, 120)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # This environment's pip installs into the new interpreter (`pip --python`).
    boot = _run([sys.executable, "-m", "pip", "--python", str(python), "--version"], tmp_path, 60)
    assert boot.returncode == 0, boot.stderr
    lock = REPO / "requirements" / "lock.txt"
    inst = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-compile", "--disable-pip-version-check", "-c", str(lock), str(project)],
        tmp_path, 900,
    )  # fmt: skip
    assert inst.returncode == 0, inst.stdout[-3000:] + inst.stderr[-3000:]

    help_ = _run([str(venv / "bin" / "mlcore"), "--help"], tmp_path, 120)
    assert help_.returncode == 0, help_.stderr
    assert "Usage" in help_.stdout and "demo" in help_.stdout

    imported = _run([str(python), "-c", _IMPORT_ALL], tmp_path, 300)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert str(venv) in imported.stdout, imported.stdout

    listed = _run([sys.executable, "-m", "pip", "--python", str(python), "list"], tmp_path, 60)
    names = {line.split()[0].lower() for line in listed.stdout.splitlines()[2:] if line.strip()}
    assert "ml-assets-core" in names
    # The runtime install holds what the code imports: none of the dev tools or unused stacks.
    assert not names & {"torch", "pytest", "hypothesis", "vectorbt", "stable-baselines3"}
