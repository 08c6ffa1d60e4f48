"""What the command line prints: help without the heavy stack, stage lines off a terminal,
version ids never cut, no third-party chatter unless --verbose."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlcore import _logging, _progress
from mlcore.cli import _render, app
from tests.conftest import CONFIG_ROOT, make_version, third_party_csv

HEAVY = ("pandas", "numpy", "pyarrow", "numba", "sklearn", "lightgbm", "xgboost", "optuna",
         "prefect", "sqlalchemy", "alembic", "psycopg", "redis", "scipy", "mlcore.data",
         "mlcore.training", "mlcore.backtest", "mlcore.registry", "mlcore.flows")  # fmt: skip
SRC = Path(__file__).resolve().parents[2] / "src"


def _imported_by(*args: str) -> set[str]:
    """Every module ``python -m mlcore ARGS`` imports, read from ``-X importtime``."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mlcore", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage" in done.stdout
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.MULTILINE)
    assert "mlcore.cli" in names  # the measurement did see the command line load
    return set(names)


@pytest.mark.parametrize(
    "args", [["--help"], ["registry", "--help"], ["train", "--help"], ["flows", "run", "--help"]]
)
def test_help_imports_none_of_the_heavy_stack(args: list[str]) -> None:
    names = _imported_by(*args)
    loaded = sorted(h for h in HEAVY if h in names or any(n.startswith(h + ".") for n in names))
    assert loaded == [], f"`mlcore {' '.join(args)}` imported {loaded}"


def _record(version: str) -> SimpleNamespace:
    return SimpleNamespace(
        model_version=version, status="rolled_back", timeframe="1day", theta1=0.61234,
        theta2=None, created_at=datetime(2025, 1, 1, tzinfo=UTC), deployed_at=None,
        code_hash="abcdef0123", notes="a long note on why this version was promoted " * 3,
    )  # fmt: skip


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_version_ids_are_never_cut(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    versions = ["20250101_0000_abc1234", "20251231_2359_nocode_12"]
    buf = io.StringIO()
    monkeypatch.setattr(_render, "out", Console(file=buf, width=width))
    _render.print_records([_record(v) for v in versions], "model registry")
    table = io.StringIO()
    Console(file=table, width=width).print(_render.record_table([_record(versions[0])], "t"))
    for shown in (buf.getvalue(), table.getvalue()):
        for v in versions[: 2 if shown is buf.getvalue() else 1]:
            assert v in shown, shown
    assert "…" not in buf.getvalue()


def test_registry_list_off_a_terminal_shows_whole_versions(archive: Path, tmp_path: Path) -> None:
    version = "20250101_0000_abc1234_17"
    folder = make_version(tmp_path / "models", version)
    root = ["--config-root", str(CONFIG_ROOT)]
    result = CliRunner().invoke(app, ["registry", "register", "--model", str(folder),
                                      "--notes", "n", *root])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["registry", "list", *root])
    assert result.exit_code == 0
    assert version in result.stdout


def test_progress_lines_only_with_a_sink() -> None:
    _progress.stage_done("silent")  # no sink installed: nothing, no error
    lines: list[str] = []
    with _progress.reporting(lines.append):
        with _progress.stage("ingest") as st:
            st.detail = "6 files, 105,120 rows"
        _progress.stage_done("catalog", "12 partitions", 0.25)
    _progress.stage_done("after")
    assert len(lines) == 2
    assert re.fullmatch(r"\[\s+\d+\.\d s\] ingest: 6 files, 105,120 rows \(\d+\.\d s\)", lines[0])
    assert lines[1].endswith("] catalog: 12 partitions (0.2 s)")
    assert _progress.format_line(12.34, "ingest", "6 files") == "[  12.3 s] ingest: 6 files"


def test_ingest_off_a_terminal_prints_one_line_per_stage(archive: Path) -> None:
    result = CliRunner().invoke(app, [
        "ingest", "--config-root", str(CONFIG_ROOT), "--symbol", "EURUSD", "--timeframe", "1h",
        "--path", str(third_party_csv("EURUSD.csv")),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    stages = re.findall(r"^\[\s*\d+\.\d s\] (\w+): (.*)$", result.stdout, re.MULTILINE)
    assert [name for name, _ in stages] == ["read", "ingest"]
    assert stages[1][1].startswith("5,000 rows, 5,000 new")


def _cli(args: list[str], archive: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHIVE_PATH": str(archive),
           "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}  # fmt: skip
    env.pop("LOG_LEVEL", None)
    env.pop("PREFECT_LOGGING_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-m", "mlcore", *args, "--config-root", str(CONFIG_ROOT)],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip


@pytest.mark.slow  # two fresh CLI processes, each migrating a new registry
def test_no_alembic_chatter_unless_verbose(tmp_path: Path) -> None:
    # Opening the embedded registry runs its Alembic migrations.
    quiet = _cli(["registry", "list"], tmp_path / "a")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    loud = _cli(["registry", "list", "--verbose"], tmp_path / "b")
    assert loud.returncode == 0, loud.stderr
    assert "Context impl SQLiteImpl" in loud.stderr


# One process per verbosity runs a flow that succeeds and one that fails (one Prefect server
# start-up each, the slow part).
_FLOWS = """
import sys
from mlcore._logging import configure_logging, set_third_party_verbosity
verbose = sys.argv[1] == "1"
configure_logging("INFO" if verbose else "WARNING")
set_third_party_verbosity(verbose)
from prefect import flow, task
@flow
def hello() -> int:
    return 1
@task
def step() -> int:
    raise ValueError("a user error")
@flow
def failing() -> int:
    return step()
hello()
try:
    failing()
except ValueError:
    print("one line of our own")
"""


@pytest.mark.slow  # a Prefect server start-up per run
@pytest.mark.parametrize("verbose", [False, True])
def test_no_prefect_lines_unless_verbose_for_a_flow_that_runs_or_fails(verbose: bool) -> None:
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "150",
           "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}  # fmt: skip
    # As a user's shell has them (an in-process CLI test of this worker set them for itself).
    for var in ("PREFECT_LOGGING_LEVEL", "PREFECT_API_URL",
                "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL",
                "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL"):  # fmt: skip
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, "-c", _FLOWS, "1" if verbose else "0"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "one line of our own" in done.stdout, out[-2000:]
    # A failed flow's lines (and its traceback) were shown without --verbose before.
    prefect = ("Finished in state Completed()" in out, "Finished in state Failed" in out,
               "Encountered exception" in out, "Traceback" in out)  # fmt: skip
    assert prefect == (verbose,) * 4, out[-3000:]


@pytest.mark.parametrize(("flag", "level"), [("0", logging.WARNING), ("1", logging.INFO)])
def test_child_processes_inherit_the_verbosity(
    monkeypatch: pytest.MonkeyPatch, flag: str, level: int
) -> None:
    monkeypatch.setenv(_logging.VERBOSE_ENV, flag)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "x")  # restored by monkeypatch afterwards
    _logging.inherit_third_party_verbosity()
    assert logging.getLogger("alembic.runtime.migration").getEffectiveLevel() == level
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.WARNING
    _logging.set_third_party_verbosity(False)  # as every command without --verbose leaves it
