"""The command line: help everywhere, clear errors with exit codes, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import typer
import typer.core
import typer.main
from typer.testing import CliRunner

from mlcore._logging import configure_logging, get_logger
from mlcore.cli import app
from tests.conftest import CONFIG_ROOT, make_version, third_party_csv

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["demo"],
        ["ingest"],
        ["catalog"],
        ["catalog", "build"],
        ["config"],
        ["config", "check"],
        ["train"],
        ["backtest"],
        ["theta"],
        ["theta", "optimize"],
        ["report"],
        ["registry"],
        ["registry", "list"],
        ["registry", "promote"],
        ["flows"],
        ["flows", "run"],
        ["flows", "serve"],
        ["flows", "status"],
        ["flows", "resume"],
        ["features"],
        ["features", "build"],
        ["registry", "show"],
        ["registry", "register"],
        ["registry", "rollback"],
        ["registry", "verify"],
        ["registry", "restore"],
        ["registry", "prune"],
        ["audit"],
        ["audit", "verify"],
        ["audit", "at"],
        ["serve"],
        ["init"],
        ["universe"],
        ["universe", "add-instrument"],
        ["universe", "add-pair"],
        ["api"],
        ["api", "serve"],
        ["api", "openapi"],
        ["api", "user"],
        ["api", "user", "add"],
        ["api", "user", "list"],
        ["api", "token"],
        ["api", "token", "issue"],
        ["api", "token", "revoke"],
        ["configs"],
        ["configs", "validate"],
        ["configs", "pr"],
        ["configs", "approve"],
        ["configs", "merge"],
        ["configs", "apply"],
        ["configs", "rollback"],
        ["configs", "status"],
        ["configs", "init-git"],
        ["fills"],
        ["fills", "simulate"],
        ["fills", "ingest"],
        ["fills", "show"],
        ["fills", "report"],
        ["kpis"],
        ["kpis", "compute"],
        ["kpis", "show"],
    ],
)
def test_help_everywhere(cmd: list[str]) -> None:
    code, out = _run(*cmd, "--help")
    assert code == 0
    assert "Usage" in out
    groups = ("catalog", "config", "features", "registry", "theta", "flows", "universe", "audit",
              "configs", "api", "user", "token", "fills", "kpis")  # fmt: skip
    if cmd and cmd[-1] not in groups:
        # Every command takes the shared options, declared once for all of them.
        assert "--config-env" in out and "--config-root" in out and "--verbose" in out


def test_every_command_is_in_the_tree() -> None:
    from mlcore.cli import _app

    group = typer.main.get_command(_app.app)
    assert isinstance(group, typer.core.TyperGroup)
    names = {
        f"{name} {sub}" if isinstance(cmd, typer.core.TyperGroup) else name
        for name, cmd in group.commands.items()
        for sub in (cmd.commands if isinstance(cmd, typer.core.TyperGroup) else [""])
    }
    # 22 + init, universe add-instrument, add-pair, audit verify, audit at + 8 configs + api
    # serve, openapi, user, token + fills simulate, ingest, show, report + kpis compute, show
    assert len(names) == 45, sorted(names)


def test_config_check_ok(archive: Path) -> None:
    code, out = _run("config", "check", "--config-root", str(CONFIG_ROOT))
    assert code == 0
    assert "config OK for SERVICE_ENV=dev" in out
    assert str(archive) in out


def test_config_error_exit_2_names_file_and_key(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    path = root / "base" / "pipeline_policy.yaml"
    path.write_text(path.read_text().replace("outlier_sigma: 8.0", "outlier_sigma: -8.0"))
    code, out = _run("config", "check", "--config-root", str(root))
    assert code == 2
    assert "CONFIG_SCHEMA_INVALID" in out
    assert "dq_thresholds.outlier_sigma" in out
    assert str(path) in out.replace("\n", "")
    assert "Traceback" not in out


def test_env_refused_names_missing(archive: Path) -> None:
    code, out = _run("config", "check", "--config-root", str(CONFIG_ROOT), "--config-env", "prod")
    assert code == 2
    assert "PAGERDUTY_INTEGRATION_KEY" in out and "POSTGRES_URL" in out


def test_ingest_missing_file(archive: Path, tmp_path: Path) -> None:
    code, out = _run(
        "ingest",
        "--config-root",
        str(CONFIG_ROOT),
        "--symbol",
        "EURUSD",
        "--timeframe",
        "1h",
        "--path",
        str(tmp_path / "nope.csv"),
    )
    assert code == 1
    assert "DATA_FILE_NOT_FOUND" in out and "nope.csv" in out
    assert "Traceback" not in out


def test_ingest_needs_path(archive: Path) -> None:
    code, out = _run(
        "ingest", "--config-root", str(CONFIG_ROOT), "--symbol", "EURUSD", "--timeframe", "1h"
    )
    assert code == 2
    assert "--path" in out


def test_ingest_real_file_then_again(archive: Path) -> None:
    args = (
        "ingest",
        "--config-root",
        str(CONFIG_ROOT),
        "--symbol",
        "eurusd",
        "--timeframe",
        "1h",
        "--path",
        str(third_party_csv("EURUSD.csv")),
    )
    code, out = _run(*args)
    assert code == 0, out
    assert "ingested EUR/USD 1h" in out
    assert "5000 rows read, 0 rejected, 5000 new" in out
    assert "canonical partitions written: 11" in out
    code, out = _run(*args)
    assert code == 0
    assert "canonical partitions written: 0; unchanged: 11" in out
    code, out = _run("catalog", "build", "--config-root", str(CONFIG_ROOT))
    assert code == 0
    assert "catalog: 11 partitions, 11 included, 0 excluded" in out


def test_ingest_reports_bad_rows_by_line(archive: Path, tmp_path: Path) -> None:
    src = third_party_csv("EURUSD.csv").read_text().splitlines()
    src[3] = src[3].split(",")[0] + ",1.07,1.06,1.08,1.07,10"  # high < low on line 4
    src[7] = "2017-04-19 99:00:00,1.07,1.08,1.06,1.07,10"  # line 8
    path = tmp_path / "eurusd.csv"
    path.write_text("\n".join(src) + "\n")
    code, out = _run(
        "ingest",
        "--config-root",
        str(CONFIG_ROOT),
        "--symbol",
        "EUR/USD",
        "--timeframe",
        "1h",
        "--path",
        str(path),
    )
    assert code == 0, out
    assert "2 rejected" in out
    assert "row 4: field 'high': high < low" in out
    assert "row 8: field 'ts': unparsable timestamp" in out
    assert "flagged bars:" in out


def test_unknown_symbol(archive: Path) -> None:
    code, out = _run(
        "ingest",
        "--config-root",
        str(CONFIG_ROOT),
        "--symbol",
        "XPTUSD",
        "--timeframe",
        "1h",
        "--path",
        str(third_party_csv("EURUSD.csv")),
    )
    assert code == 2
    assert "DATA_SYMBOL_UNKNOWN" in out and "--calendar" in out


def test_bad_timeframe_value(archive: Path) -> None:
    code, out = _run(
        "ingest",
        "--config-root",
        str(CONFIG_ROOT),
        "--symbol",
        "EURUSD",
        "--timeframe",
        "7h",
        "--path",
        str(third_party_csv("EURUSD.csv")),
    )
    assert code != 0
    assert "Traceback" not in out


def test_features_build_needs_a_catalog_and_a_known_pair(archive: Path) -> None:
    code, out = _run("features", "build", "--config-root", str(CONFIG_ROOT), "--timeframe", "1h")
    assert code == 1
    assert "CATALOG_INDEX_MISSING" in out
    code, out = _run(
        "ingest", "--config-root", str(CONFIG_ROOT), "--symbol", "EURUSD", "--timeframe", "1h",
        "--path", str(third_party_csv("EURUSD.csv")),
    )  # fmt: skip
    assert code == 0
    assert _run("catalog", "build", "--config-root", str(CONFIG_ROOT))[0] == 0
    args = ("features", "build", "--config-root", str(CONFIG_ROOT), "--timeframe", "1h")
    code, out = _run(*args, "--symbol", "eurusd")
    assert code == 0, out
    assert "features EUR_USD 1h" in out and "computed 11 month(s), from cache 0" in out
    code, out = _run(*args, "--symbol", "eurusd")
    assert "computed 0 month(s), from cache 11" in out
    code, out = _run(*args, "--pair", "EUR_GBP")
    assert code == 65
    assert "pair EUR_GBP: no included 1h bars of GBP/USD in the catalog" in out
    code, out = _run(
        "features", "build", "--config-root", str(CONFIG_ROOT), "--timeframe", "1h", "--pair", "X_Y"
    )
    assert code == 2
    assert "pair 'X_Y' is not in universe.yaml" in out


def test_internal_error_log_has_no_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING")
    secret = "tok-" + "s3cr3t"  # a local variable a traceback with locals would print
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("test").exception("failed")
    err = capsys.readouterr().err
    assert "boom" in err
    assert secret not in err


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [(["--timeframe", "bogus"], "--timeframe 'bogus' is not one of"),
     (["--timeframe", "1h", "--symbol", "FOO/BAR"], "--symbol 'FOO/BAR' is not in universe.yaml")],
)  # fmt: skip
def test_features_build_refuses_bad_arguments(
    archive: Path, extra: list[str], fragment: str
) -> None:
    code, out = _run("features", "build", "--config-root", str(CONFIG_ROOT), *extra)
    assert code == 2
    assert fragment in out


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--timeframe", "7m"], 2, "--timeframe '7m'"),
        (["--timeframe", "1h", "--pair", "NOPE"], 2, "--pair 'NOPE' is not in universe.yaml"),
        (["--timeframe", "1h"], 1, "CATALOG_INDEX_MISSING"),
    ],
)
def test_train_refuses_bad_arguments_and_a_missing_catalog(
    archive: Path, extra: list[str], code: int, fragment: str
) -> None:
    got, out = _run("train", "--config-root", str(CONFIG_ROOT), *extra)
    assert got == code, out
    assert fragment in out
    assert "Traceback" not in out


def test_backtest_theta_and_report_refuse_a_missing_model(archive: Path, tmp_path: Path) -> None:
    for cmd in (["backtest"], ["theta", "optimize"], ["report"]):
        code, out = _run(*cmd, "--config-root", str(CONFIG_ROOT))
        assert code == 2, (cmd, out)
        assert "no model version under" in out and "mlcore train" in out
        assert "Traceback" not in out
    code, out = _run("backtest", "--model", "20990101_0000_nothere")
    assert code == 2 and "'20990101_0000_nothere' not found" in out
    # A model folder but no catalog to score it on: said, with the command that fixes it.
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    code, out = _run("backtest", "--model", str(empty))
    assert code == 2 and "MODEL_VERSION_UNREGISTERED" in out and "--unregistered" in out, out
    code, out = _run("backtest", "--model", str(empty), "--unregistered")
    assert code == 1 and "run `mlcore catalog build` first" in out, out
    code, out = _run("report", "--model", str(empty), "--unregistered")
    assert code == 2 and "has no backtest results" in out


def test_registry_commands_on_the_embedded_database(archive: Path, tmp_path: Path) -> None:
    folder = make_version(tmp_path / "models", "20250101_0000_abc1234")
    root = ["--config-root", str(CONFIG_ROOT)]
    code, out = _run("registry", "register", "--model", str(folder), "--notes", "trained", *root)
    assert code == 0 and "registered 20250101_0000_abc1234 as draft (sqlite)" in out
    assert (archive / "registry" / "registry.db").exists()
    code, out = _run("registry", "promote", folder.name, "--to", "deployed", "--notes", "go", *root)
    assert code == 1
    assert "error REGISTRY_STATE_INVALID_TRANSITION: 20250101_0000_abc1234 is draft" in out
    code, out = _run("registry", "promote", folder.name, "--to", "candidate", "--notes", "", *root)
    assert code == 1 and "needs notes" in out
    code, out = _run(
        "registry", "promote", folder.name, "--to", "candidate", "--notes", "ok", *root
    )
    assert code == 0 and "is now candidate" in out
    code, out = _run("registry", "show", folder.name, *root)
    assert code == 0 and "MODEL_REGISTERED" in out and "MODEL_STATUS" in out
    code, out = _run("registry", "list", "--status", "nope", *root)
    assert code == 2 and "--status 'nope' is not one of 'draft', 'candidate'" in out
    code, out = _run("registry", "rollback", "--notes", "x", *root)
    assert code == 1 and "nothing to roll back" in out
    assert "Traceback" not in out


def test_flows_status_and_resume_on_the_embedded_database(archive: Path) -> None:
    root = ["--config-root", str(CONFIG_ROOT)]
    code, out = _run("flows", "status", *root)
    assert code == 0, out
    assert "consecutive failures: 0; retraining enabled" in out
    code, out = _run("flows", "resume", "--notes", "  ", *root)
    assert code == 1
    assert "error REGISTRY_REQUEST_NOTES_MISSING: resuming retraining needs notes" in out
    code, out = _run("flows", "resume", "--notes", "disk replaced", *root)
    assert code == 0 and "retraining resumed (0 consecutive failure(s) cleared)" in out
    code, out = _run("flows", "run", "backtest", *root)
    assert code == 2 and "no model version under" in out
    code, out = _run("flows", "run", "nope", *root)
    assert code == 2
