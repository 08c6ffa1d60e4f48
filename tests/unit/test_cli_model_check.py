"""``--model`` on backtest, theta, report and serve goes through the registry, as the deployed
path does: a registered version whose files fail the checksums recorded at registration is
restored from the artifact store or refused, even when its own ``checksums.json`` was rewritten
to match; a folder the registry does not hold needs ``--unregistered``. The model files here are
stand-ins (``make_version``): what is under test ends before they are parsed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.registry import registry_for
from mlcore.training import TrainStatus
from tests.conftest import CONFIG_ROOT, make_version

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
V = "20250101_0000_abc1234"
COMMANDS = [["backtest"], ["theta", "optimize"], ["report"], ["serve", "--bars", "file"]]


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, *ROOT])
    return result.exit_code, result.stdout + result.stderr


def _registered(archive: Path) -> Path:
    folder = make_version(archive / "models", V)
    code, out = _run("registry", "register", "--model", V, "--notes", "trained")
    assert code == 0, out
    return folder


def _swap(folder: Path, name: str = "ai1.lgbm.txt", body: bytes = b"swapped\n") -> None:
    """Replace a model file and rewrite checksums.json to match: the folder vouches for
    itself."""
    (folder / name).write_bytes(body)
    sums = json.loads((folder / "checksums.json").read_bytes())
    sums[name] = hashlib.sha256(body).hexdigest()
    (folder / "checksums.json").write_text(json.dumps(sums))


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_a_swapped_model_is_restored_from_the_registry_before_use(
    archive: Path, cfg: AppConfig, cmd: list[str]
) -> None:
    folder = _registered(archive)
    sums = (folder / "checksums.json").read_bytes()
    _swap(folder)
    code, out = _run(*cmd, "--model", V)
    assert "Traceback" not in out
    # What the command did next (no catalog, no results, stand-in models) does not matter:
    # the files it went on with are the registered ones.
    assert (folder / "ai1.lgbm.txt").read_bytes() == b"tree\n", (code, out)
    assert (folder / "checksums.json").read_bytes() == sums
    events = [h.event for h in registry_for(cfg).history(V)]
    assert events[-1] == "MODEL_RESTORED"


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_a_swapped_model_whose_archived_copy_is_damaged_too_is_refused(
    archive: Path, cfg: AppConfig, cmd: list[str]
) -> None:
    folder = _registered(archive)
    _swap(folder)
    (cfg.paths.artifacts / V / "ai1.lgbm.txt").write_bytes(b"also bad\n")
    code, out = _run(*cmd, "--model", V)
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.startswith("error ")]
    assert len(lines) == 1 and lines[0].startswith("error REGISTRY_ARTIFACT_DAMAGED: "), out
    assert "ai1.lgbm.txt (checksum mismatch)" in out and "not used" in out
    assert "Traceback" not in out
    assert (folder / "ai1.lgbm.txt").read_bytes() == b"swapped\n"  # never replaced by a bad copy


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_an_unregistered_folder_needs_the_flag(
    archive: Path, tmp_path: Path, cmd: list[str]
) -> None:
    other = make_version(tmp_path / "elsewhere", "20250202_0000_unreg")
    code, out = _run(*cmd, "--model", str(other))
    assert code == 2, out
    assert "error MODEL_VERSION_UNREGISTERED: model version 20250202_0000_unreg" in out
    assert "--unregistered" in out and "Traceback" not in out
    code, out = _run(*cmd, "--model", str(other), "--unregistered")
    assert "MODEL_VERSION_UNREGISTERED" not in out and "Traceback" not in out


def test_a_copy_of_a_registered_version_is_checked_never_written(
    archive: Path, tmp_path: Path
) -> None:
    folder = _registered(archive)
    copy = tmp_path / "copy" / V
    shutil.copytree(folder, copy)
    _swap(copy)
    code, out = _run("backtest", "--model", str(copy), "--unregistered")
    assert code == 1 and "error REGISTRY_ARTIFACT_DAMAGED: " in out, out
    assert f"name the version ({V})" in out
    assert (copy / "ai1.lgbm.txt").read_bytes() == b"swapped\n"
    assert (folder / "ai1.lgbm.txt").read_bytes() == b"tree\n"


def test_a_swapped_baseline_is_refused_too(archive: Path, cfg: AppConfig) -> None:
    _registered(archive)
    base = make_version(archive / "models", "20240101_0000_base")
    assert _run("registry", "register", "--model", base.name, "--notes", "old")[0] == 0
    _swap(base)
    (cfg.paths.artifacts / base.name / "ai1.lgbm.txt").unlink()
    code, out = _run("backtest", "--model", V, "--baseline", base.name)
    assert code == 1 and "error REGISTRY_ARTIFACT_DAMAGED: model version 20240101_0000_base" in out


def test_a_rewritten_checksum_file_alone_is_caught_by_registry_verify(
    archive: Path, cfg: AppConfig
) -> None:
    folder = _registered(archive)
    sums = json.loads((folder / "checksums.json").read_bytes())
    sums["extra.pkl"] = "0" * 64
    (folder / "checksums.json").write_text(json.dumps(sums))
    code, out = _run("registry", "verify", V)
    assert code == 1 and "checksums.json: differs from the registry's" in out


@pytest.mark.parametrize(
    ("status", "reasons", "warnings", "want"),
    [
        (TrainStatus.OK, [], [], "draft"),
        (TrainStatus.BLOCKED, ["canary"], [], "rejected"),
        (TrainStatus.WEAK, [], ["ai1: CV AUC 0.433 is below 0.5"], "draft"),
    ],
)
def test_train_registers_the_version_it_wrote(
    archive: Path, cfg: AppConfig, status: TrainStatus, reasons: list[str], warnings: list[str],
    want: str,
) -> None:  # fmt: skip
    from mlcore.cli._models import register_trained

    folder = make_version(cfg.paths.models, V)
    report = SimpleNamespace(folder=folder, status=status, blocked_reasons=reasons,
                             warnings=warnings, model_version=V)  # fmt: skip
    rec = register_trained(registry_for(cfg), report, "ci")  # type: ignore[arg-type]
    assert rec.status == want
    notes = registry_for(cfg).get(V).notes
    assert f"retrain_status{'=' if reasons else ' '}{status}" in notes
    assert all(w in notes for w in reasons + warnings)
    code, out = _run("report", "--model", V)  # registered: past the check, no results yet
    assert code == 2 and "has no backtest results" in out, out


def test_flows_run_on_a_named_version_is_checked_too(
    archive: Path, cfg: AppConfig, tmp_path: Path
) -> None:
    folder = _registered(archive)
    _swap(folder)
    (cfg.paths.artifacts / V / "ai1.lgbm.txt").unlink()
    code, out = _run("flows", "run", "theta", "--model", V)
    assert code == 1 and "error REGISTRY_ARTIFACT_DAMAGED: " in out, out
    assert "ai1.lgbm.txt (checksum mismatch)" in out
    other = make_version(tmp_path / "elsewhere", "20250202_0000_unreg")
    code, out = _run("flows", "run", "backtest", "--model", str(other))
    assert code == 2 and "error MODEL_VERSION_UNREGISTERED" in out, out


def test_the_backtest_report_of_an_unregistered_version_says_so() -> None:
    from mlcore.backtest._run import report_title

    assert "UNREGISTERED" in report_title({"model_version": V, "model_registered": False})
    assert report_title({"model_version": V, "model_registered": True}) == (
        f"Backtest of model version {V}"
    )
    assert "UNREGISTERED" not in report_title({"model_version": V})  # results made before
