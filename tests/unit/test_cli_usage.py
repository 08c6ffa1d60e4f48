"""Bad option values are usage errors: exit 2 and one line naming the option, the value and
what is accepted; every other failure keeps its own code; user strings are never markup."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis.exceptions
import sqlalchemy.exc
from typer.testing import CliRunner

import mlcore.registry
from mlcore.cli import app
from mlcore.cli._params import ENVIRONMENTS, STATUSES
from mlcore.cli._run import DEMO_MONTHS_MAX, DEMO_MONTHS_MIN
from mlcore.config import ENVIRONMENTS as CONFIG_ENVIRONMENTS
from mlcore.demo import DEMO_MONTHS_RANGE
from mlcore.errors import ConfigError
from tests.conftest import CONFIG_ROOT, free_port, make_version, third_party_csv

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def _csv() -> str:
    return str(third_party_csv("EURUSD.csv"))


_INGEST = ("ingest", "--symbol", "EURUSD", "--timeframe", "1h", "--path")
_V = "20250101_0000_abc1234"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--timeframe", "1M"], "--timeframe '1M' is ambiguous"),
        (["train", "--timeframe", "bogus"], "--timeframe 'bogus' is not one of the timeframes"),
        (["features", "build", "--timeframe", "7m"], "--timeframe '7m' is not one of"),
        (["flows", "run", "retrain", "--timeframe", "weekly"], "--timeframe 'weekly'"),
        (["ingest", "--symbol", "EURUSD", "--timeframe", "2h"], "--timeframe '2h'"),
        ([*_INGEST, "x.csv", "--start", "2024-13-01"], "--start '2024-13-01' is not an ISO 8601"),
        ([*_INGEST, "x.csv", "--end", "yesterday"], "--end 'yesterday' is not an ISO 8601"),
        ([*_INGEST, "x.csv", "--tz", "Mars/Base"], "--tz 'Mars/Base' is not an IANA time zone"),
        ([*_INGEST, "x.csv", "--source", "ftp"], "--source 'ftp' is not one of 'file'"),
        ([*_INGEST, "x.csv", "--date-format", "dym"], "--date-format 'dym' is not one of auto"),
        ([*_INGEST, "x.csv", "--date-format", "%H:%M"], "--date-format '%H:%M' does not hold"),
        (["train", "--timeframe", "1h", "--seed", "-1"], "--seed '-1' should be greater"),
        (["demo", "--seed", "x"], "--seed 'x' should be a valid integer"),
        (["demo", "--months", "7"], "--months '7' should be greater than or equal to 8"),
        (["demo", "--months", "121"], "--months '121' should be less"),
        (["backtest", "--seed", str(2**32)], f"--seed '{2**32}' should be less"),
        (["theta", "optimize", "--seed", "-5"], "--seed '-5'"),
        (["serve", "--workers", "0"], "--workers '0' should be greater"),
        (["serve", "--replay-last", "0"], "--replay-last '0'"),
        (["serve", "--exit-when-idle", "0"], "--exit-when-idle '0'"),
        (["serve", "--bars", "kafka"], "--bars 'kafka' is not one of 'redis', 'file'"),
        (["registry", "show", "nope"], "VERSION 'nope' is not a model version (YYYYMMDD_HHMM_"),
        (["registry", "verify", "1.0"], "VERSION '1.0' is not a model version"),
        (["registry", "promote", _V, "--to", "live", "--notes", "x"], "--to 'live' is not one"),
        (["registry", "list", "--status", "nope"], "--status 'nope' is not one of 'draft'"),
        (["flows", "run", "nope"], "NAME 'nope' is not one of 'retrain'"),
        (["flows", "status", "--limit", "0"], "--limit '0' should be greater than or equal to 1"),
        (["flows", "serve", "--cron", "61 * * * *"], "--cron '61 * * * *' is not a cron"),
        (["config", "check", "--config-env", "qa"], "--config-env 'qa' is not one of dev, stg"),
        (["--config-env", "qa", "config", "check"], "--config-env 'qa' is not one of dev, stg"),
        # Values only the configuration can judge: the same one line and exit 2.
        (["train", "--timeframe", "1h", "--pair", "NOPE"], "--pair 'NOPE' is not in universe"),
        (["features", "build", "--timeframe", "1h", "--pair", "X_Y"], "--pair 'X_Y' is not in"),
        (["serve", "--pairs", "XAU_XAG,X_Y"], "--pairs 'X_Y' is not in universe.yaml"),
        ([*_INGEST, "x.csv", "--calendar", "mars"], "--calendar 'mars' is not in universe.yaml"),
        ([*_INGEST, "x.csv", "--start", "2024-03-06", "--end", "2024-03-05"], "is after end"),
        # File-only options with a REST source are refused, not ignored.
        (
            [
                *_INGEST,
                "/etc/passwd",
                "--source",
                "twelvedata",
                "--tz",
                "UTC",
                "--date-format",
                "dmy",
            ],
            "--path, --tz, --date-format only apply to --source file, not --source twelvedata",
        ),
        (
            [
                "ingest",
                "--symbol",
                "EURUSD",
                "--timeframe",
                "1h",
                "--source",
                "auto",
                "--tz",
                "Europe/London",
            ],
            "--tz only applies to --source file, not --source auto",
        ),
        (["train", "--timeframe", "1h"], None),  # flag check: a missing option (below)
    ],
)
def test_a_bad_value_is_one_usage_line_and_exit_2(
    archive: Path, args: list[str], fragment: str | None
) -> None:
    if fragment is None:
        args, fragment = ["train"], "Missing option '--timeframe'"
    code, out, err = _run(*args, *ROOT)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error CLI_"), err
    assert fragment in lines[0]
    assert "internal error" not in err and "Traceback" not in err


def test_a_missing_choice_option_lists_the_choices_on_one_plain_line(archive: Path) -> None:
    code, _, err = _run("registry", "promote", "20250101_0000_abc1234", "--notes", "n", *ROOT)
    assert code == 2
    assert "Missing option '--to'. Choose from: candidate, approved, deployed, rejected" in err
    assert "\t" not in err and "  " not in err.strip()


def test_an_unknown_option_is_one_line_pointing_at_the_help(archive: Path) -> None:
    code, _, err = _run("train", "--bogus", *ROOT)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error CLI_USAGE_INVALID: No such option: --bogus")
    assert "train --help`)" in err


@pytest.mark.parametrize("spelling", ["1d", "1D", "D", "daily", "1day", "60min", "1H", "h",
                                      "hourly", "5m", "5min", "1min", "1m"])  # fmt: skip
def test_train_takes_the_timeframe_spellings_users_bring(archive: Path, spelling: str) -> None:
    # Parsed and allowed: the command goes on to find no catalog (exit 1), not a ValueError.
    code, _, err = _run("train", "--timeframe", spelling, *ROOT)
    assert code == 1, err
    assert "CATALOG_INDEX_MISSING" in err
    assert "internal error" not in err


def test_shared_options_before_or_after_the_command(archive: Path) -> None:
    code, out, _ = _run("--config-root", str(CONFIG_ROOT), "config", "check")
    assert code == 0 and "config OK for SERVICE_ENV=dev" in out
    code, _, err = _run("config", "check", *ROOT, env={"SERVICE_ENV": "prod"})
    assert code == 2 and "POSTGRES_URL" in err  # SERVICE_ENV read at either level
    # Typed on the command line beats the environment, after or before the command name.
    code, out, _ = _run(
        "config", "check", "--config-env", "dev", *ROOT, env={"SERVICE_ENV": "prod"}
    )
    assert code == 0 and "SERVICE_ENV=dev" in out
    code, out, _ = _run(
        "--config-env", "dev", "config", "check", *ROOT, env={"SERVICE_ENV": "prod"}
    )
    assert code == 0 and "SERVICE_ENV=dev" in out


def test_the_cli_lists_mirror_the_stages() -> None:
    assert STATUSES == mlcore.registry.STATUSES
    assert ENVIRONMENTS == tuple(CONFIG_ENVIRONMENTS)
    assert (DEMO_MONTHS_MIN, DEMO_MONTHS_MAX) == DEMO_MONTHS_RANGE


@pytest.mark.parametrize(
    ("exc", "code", "fragment"),
    [
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")), 75,
         "error REGISTRY_DB_UNAVAILABLE: registry database unavailable"),
        (psycopg.OperationalError("could not connect to server"), 75, "REGISTRY_DB_UNAVAILABLE"),
        (redis.exceptions.ConnectionError("Error 111 connecting"), 75, "REGISTRY_DB_UNAVAILABLE"),
        (TimeoutError("timed out"), 75, "REGISTRY_DB_UNAVAILABLE"),
        (ConfigError("CONFIG_ENV_MISSING", "POSTGRES_URL is not set"), 2,
         "error CONFIG_ENV_MISSING: POSTGRES_URL is not set"),
        (RuntimeError("boom"), 70, "internal error RuntimeError: boom"),
        (sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("no table")), 70,
         "internal error ProgrammingError"),
    ],
)  # fmt: skip
def test_only_an_unreachable_registry_is_retryable(
    archive: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception, code: int, fragment: str
) -> None:
    def refuse(_cfg: object) -> None:
        raise exc

    monkeypatch.setattr(mlcore.registry, "registry_for", refuse)
    got, _, err = _run("registry", "list", *ROOT)
    assert got == code, err
    assert fragment in err
    assert "Traceback" not in err


def test_user_strings_are_printed_as_text_never_markup(archive: Path, tmp_path: Path) -> None:
    folder = make_version(tmp_path / "models", _V)
    notes = "[bold red]ship it[/] [link=http://x]now[/link]"
    code, _, err = _run("registry", "register", "--model", str(folder), "--notes", notes, *ROOT)
    assert code == 0, err
    code, out, _ = _run("registry", "show", _V, *ROOT)
    assert code == 0
    assert "[bold red]ship it[/]" in out.replace("\n", "")
    code, _, err = _run("train", "--timeframe", "1h", "--pair", "[red]X[/red]", *ROOT)
    assert code == 2 and "--pair '[red]X[/red]' is not in universe.yaml" in err
    code, _, err = _run("registry", "promote", _V, "--to", "deployed", "--notes", "[b]x[/b]", *ROOT)
    assert code == 1 and "error REGISTRY_STATE_INVALID_TRANSITION" in err


def test_ingest_start_and_end_take_iso_times_with_offsets(archive: Path) -> None:
    code, out, err = _run(
        *_INGEST, _csv(), "--start", "2017-04-19T09:00+02:00", "--end", "2017-05-01", *ROOT
    )
    assert code == 0, err
    assert "ingested EUR/USD 1h" in out


def test_file_contents_in_the_ingest_report_are_text(archive: Path, tmp_path: Path) -> None:
    src = third_party_csv("EURUSD.csv").read_text().splitlines()
    src[3] = src[3].split(",")[0] + ",[bold]1.07[/bold],1.08,1.06,1.07,10"
    path = tmp_path / "eurusd.csv"
    path.write_text("\n".join(src) + "\n")
    code, out, err = _run(*_INGEST, str(path), *ROOT)
    assert code == 0, err
    assert "(got '[bold]1.07[/bold]')" in out


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_config_root_that_is_no_folder_is_a_usage_error(tmp_path: Path, where: str) -> None:
    missing = str(tmp_path / "nope")
    args = ["--config-root", missing]
    code, _, err = _run(*(args if where == "before" else []), "config", "check",
                        *(args if where == "after" else []))  # fmt: skip
    assert code == 2
    assert (
        err.strip() == f"error CLI_ARGUMENT_INVALID: --config-root dir '{missing}' does not exist."
    )


@pytest.mark.slow  # waits out the 10 s start-up limit
def test_serve_with_an_unreachable_bar_source_ends_non_zero_before_any_worker(
    tmp_path: Path,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = {"REDIS_URL": url, "ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, "serve", "--bars", "redis", env=env)
    assert code == 75, err
    assert "SERVING_SOURCE_UNREACHABLE" in err and "did not answer within" in err
    assert not (tmp_path / "archive" / "serving" / "outbox").exists()  # no worker started


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("redis://:pw@127.0.0.1:63x79/0", "REDIS_URL is not a usable URL"),
     ("redis://127.0.0.1:0/0", "REDIS_URL port 0 is outside 1-65535")],
)  # fmt: skip
def test_serve_with_a_malformed_redis_url_is_a_config_error(
    tmp_path: Path, url: str, fragment: str
) -> None:
    env = {"REDIS_URL": url, "ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, "serve", "--bars", "redis", env=env)
    assert code == 2 and fragment in err and "pw" not in err, err


def test_serve_into_an_archive_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "archive").write_text("not a folder")
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, "serve", "--bars", "file", env=env)
    assert code == 2 and "DATA_ARCHIVE_UNUSABLE" in err, err


def test_serve_into_a_serving_folder_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "serving").write_text("not a folder")
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, "serve", "--bars", "file", env=env)
    # Found with every data root at start (before: SERVING_FOLDER_UNUSABLE from serve itself).
    assert code == 2 and "DATA_ARCHIVE_UNUSABLE" in err and "(serving_root)" in err, err


_USES_ARCHIVE = [
    [*_INGEST, "x.csv"],
    ["catalog", "build"],
    ["features", "build", "--timeframe", "1h"],
    ["train", "--timeframe", "1h"],
    ["backtest"],
    ["registry", "list"],
    ["flows", "status"],
    ["config", "check"],
]


@pytest.mark.parametrize("args", _USES_ARCHIVE, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize(
    ("where", "reason"),
    [("/proc/mlcore-x", "No such file or directory"),
     ("file", "it is a file, not a folder"),
     ("file/sub", "Not a directory")],
    ids=["under /proc", "a file", "under a file"],
)  # fmt: skip
def test_an_unusable_archive_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, args: list[str], where: str, reason: str
) -> None:
    """Issue 16: ``ARCHIVE_PATH=/proc/x mlcore ingest`` ended in ``internal error
    FileNotFoundError`` (exit 70); features and train blamed a missing catalog (exit 1)."""
    (tmp_path / "file").write_text("not a folder")
    path = where if where.startswith("/") else str(tmp_path / where)
    env = {"ARCHIVE_PATH": path, "SERVICE_ENV": "dev", "LOG_LEVEL": "CRITICAL"}
    code, out, err = _run(*ROOT, *args, env=env)
    assert code == 2, (code, out, err)
    line = f"error DATA_ARCHIVE_UNUSABLE: archive folder {path} cannot be used"
    assert err.strip().startswith(line) and err.strip().endswith(reason), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


def test_an_archive_whose_raw_folder_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "raw").write_text("not a folder")
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, *_INGEST, _csv(), env=env)
    assert code == 2 and "DATA_ARCHIVE_UNUSABLE: storage folder" in err, err
    assert "(raw_root) cannot be used: it is a file" in err, err


def test_serve_ends_non_zero_when_a_worker_was_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import Counter

    import mlcore.serving
    from mlcore.serving import ServedModel, ServeSummary

    def gave_up(cfg: object, **_: object) -> ServeSummary:
        model = ServedModel("v1", tmp_path, (0.6, 0.5), "named with --model")
        return ServeSummary(model, [], tmp_path, Counter(), ["worker-1 ... not restarted"],
                            ["worker-1"])  # fmt: skip

    monkeypatch.setattr(mlcore.serving, "serve", gave_up)
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, "serve", "--bars", "file", env=env)
    assert code == 1 and "SERVING_WORKER_GIVEN_UP" in err and "['worker-1']" in err, err


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("timestamp,open,high,low,close\n2024-01-02T10:00:00Z,1,0.5,2,1\n"
      "2024-01-02T11:00:00Z,-1,2,0.5,1\n", "DATA_FILE_NOTHING_ACCEPTED: "),
     ("timestamp,open,high,low,close\n", "DATA_FILE_EMPTY: "),
     ("", "DATA_FILE_EMPTY: "),
     ("date;x\n1;2\n", "DATA_FILE_SCHEMA: ")],
    ids=["every row rejected", "header only", "empty", "no price columns"],
)  # fmt: skip
def test_a_file_with_no_accepted_row_is_bad_data(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(content)
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, *_INGEST, str(path), env=env)
    assert code == 65 and fragment in err, err
    if "NOTHING" in fragment:
        assert "none of its 2 rows was accepted (1 x high < low; 1 x non-positive price)" in err


@pytest.mark.parametrize("pattern", ["%Y%Y-%m-%d", "%d/%m/%Y %H:%M %H"])
def test_a_date_format_repeating_a_directive_is_a_usage_error(tmp_path: Path, pattern: str) -> None:
    """Review: ``--date-format %Y%Y`` ended in a traceback (re.error from strptime), exit 1."""
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,open,high,low,close\n2024-01-02T10:00:00Z,1,2,0.5,1.5\n")
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, out, err = _run(*ROOT, *_INGEST, str(path), "--date-format", pattern, env=env)
    assert code == 2, err
    assert "CLI_ARGUMENT_INVALID" in err and "not a usable strftime pattern" in err
    assert "Traceback" not in out + err


def test_a_bug_in_an_option_parser_is_one_internal_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: an exception other than a usage error inside an option's parser (``re.error``
    from ``--date-format %Y%Y``) escaped every handler: a raw traceback, exit 1."""
    import mlcore.data

    def broken(text: str) -> str:
        raise RuntimeError(f"a bug reading {text!r}")

    monkeypatch.setattr(mlcore.data, "check_date_format", broken)
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, out, err = _run(*ROOT, *_INGEST, str(tmp_path / "x.csv"), "--date-format", "dmy",
                          env=env)  # fmt: skip
    assert code == 70, err
    assert err.strip().splitlines() == ["internal error RuntimeError: a bug reading 'dmy'"], err
    assert "Traceback" not in out + err


def test_a_file_with_no_accepted_row_is_bad_data_with_a_window_too(tmp_path: Path) -> None:
    """Review: with --start/--end a file of which every row was rejected ended exit 0."""
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,open,high,low,close\n2024-01-02T10:00:00Z,1,0.5,2,1\n"
                    "2024-01-02T11:00:00Z,-1,2,0.5,1\n")  # fmt: skip
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, *_INGEST, str(path), "--start", "2024-01-01",
                        "--end", "2024-01-03", env=env)  # fmt: skip
    assert code == 65, err
    assert "DATA_FILE_NOTHING_ACCEPTED: " in err and "none of its 2 rows was accepted" in err


def test_a_file_whose_date_order_is_undecided_is_refused_until_a_format_is_given(
    tmp_path: Path,
) -> None:
    """Issue 16: a D/M/Y file was read M/D/Y when its first rows had no day above 12 (exit 0,
    bars moved to other months)."""
    path = tmp_path / "bars.csv"
    rows = [f"0{d}/04/2024 {h:02d}:00,1,2,0.5,1.5" for d in range(1, 4) for h in range(24)]
    path.write_text("timestamp,open,high,low,close\n" + "\n".join(rows) + "\n")
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, _, err = _run(*ROOT, *_INGEST, str(path), env=env)
    assert code == 65, err
    assert f"DATA_FILE_DATE_AMBIGUOUS: {path}: dates like '01/04/2024 00:00' (row 2) could be " \
        "1 April or January 4" in err and "pass --date-format dmy or mdy" in err  # fmt: skip
    assert not (tmp_path / "archive" / "canonical").exists()
    code, out, err = _run(*ROOT, *_INGEST, str(path), "--date-format", "dmy", env=env)
    assert code == 0, err
    assert (tmp_path / "archive" / "canonical" / "1h" / "EUR_USD" / "2024-04").is_dir(), out


def test_control_sequences_in_user_strings_never_reach_the_terminal(tmp_path: Path) -> None:
    """A file name (or note, or file content) holding ESC [2J, an OSC title or a BEL is shown
    with those bytes written out as \\xNN, never sent raw."""
    from mlcore.cli._render import plain

    assert plain("a\x1b[2Jb\x07c\x9bd\te\nf") == "a\\x1b[2Jb\\x07c\\x9bd\te\nf"
    bad = str(tmp_path / "x\x1b]0;pwned\x07\x1b[2J.csv")
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    code, out, err = _run(*ROOT, *_INGEST, bad, env=env)
    assert code != 0 and "DATA_FILE_NOT_FOUND" in err
    assert "\x1b" not in err + out and "\x07" not in err + out
    assert "\\x1b]0;pwned\\x07\\x1b[2J.csv" in err


def test_catalog_build_names_unreadable_partitions_and_exits_65(tmp_path: Path) -> None:
    """Issue 16: after an interrupted ingest `catalog build` indexed a fraction of the
    months without a word (exit 0)."""
    env = {"ARCHIVE_PATH": str(tmp_path / "archive"), "SERVICE_ENV": "dev"}
    assert _run(*ROOT, *_INGEST, _csv(), env=env)[0] == 0
    canonical = tmp_path / "archive" / "canonical" / "1h" / "EUR_USD"
    months = sorted(p for p in canonical.iterdir() if not p.name.startswith("."))
    (months[0] / "bars.parquet").write_bytes(b"")
    code, out, err = _run(*ROOT, "catalog", "build", env=env)
    assert code == 65, (out, err)
    assert f"unreadable: {months[0]}: bars.parquet is empty (0 bytes)" in out
    assert "error CATALOG_PARTITION_UNREADABLE: 1 partition(s) could not be read" in err
    # The next ingest of the file rewrites the damaged partition; the catalog is whole again.
    assert _run(*ROOT, *_INGEST, _csv(), env=env)[0] == 0
    assert _run(*ROOT, "catalog", "build", env=env)[0] == 0


@pytest.mark.parametrize(
    ("args", "api", "code", "fragment"),
    [
        (["flows", "serve"], "not a url", 2, "FLOWS_SERVER_URL_INVALID"),
        (["flows", "run", "retrain"], "http://127.0.0.1:1/api", 75, "FLOWS_SERVER_UNREACHABLE"),
    ],
)
def test_a_bad_prefect_api_url_is_one_line(
    tmp_path: Path, args: list[str], api: str, code: int, fragment: str
) -> None:
    """Review: ConnectError / UnsupportedProtocol tracebacks (exit 70), RuntimeError 'Failed
    to reach API'."""
    env = {"ARCHIVE_PATH": str(tmp_path / "a"), "SERVICE_ENV": "dev", "LOG_LEVEL": "CRITICAL",
           "PREFECT_API_URL": api}  # fmt: skip
    rc, out, err = _run(*ROOT, *args, env=env)
    assert rc == code and fragment in err and "Traceback" not in err + out, (rc, err)
    assert len(err.strip().splitlines()) == 1, err


V = "20250101_0000_abc1234"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["registry", "promote", V, "--to", "approved", "--notes", "ok\nOVERRIDE: forged"],
         "--notes"),
        (["registry", "promote", V, "--to", "approved", "--notes", "x", "--override",
          "--reason", "ok\x1b[31m"], "--reason"),
        (["registry", "rollback", "--notes", "x" * 2001], "--notes"),
        (["flows", "resume", "--notes", "bars\rre-ingested"], "--notes"),
        (["registry", "promote", V, "--to", "approved", "--notes", "x", "--actor", "a\x07"],
         "--actor"),
    ],
    ids=["newline", "escape", "too-long", "carriage-return", "bell-in-actor"],
)  # fmt: skip
def test_audit_text_must_be_one_line_of_plain_text(
    archive: Path, args: list[str], option: str
) -> None:
    """Before: a reason with a newline was stored as given and split the audit's OVERRIDE line
    in two (a forged second line); 100 KB of text was stored too."""
    result = CliRunner().invoke(app, args)
    out = result.output + (result.stderr if result.stderr_bytes else "")
    assert result.exit_code == 2, out
    assert f"CLI_ARGUMENT_INVALID: {option}" in out and "Traceback" not in out
