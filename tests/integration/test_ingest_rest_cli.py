"""`mlcore ingest --source auto|twelvedata` end to end against loopback TwelveData servers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from tests.conftest import CONFIG_ROOT
from tests.integration._http_server import API_KEY, NO_DATA, FakeTwelveData, Reply, make_values

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def two_servers() -> Iterator[tuple[FakeTwelveData, FakeTwelveData]]:
    values = make_values(datetime(2024, 3, 4, tzinfo=UTC), 24 * 10)  # crypto: every hour
    primary = FakeTwelveData(values).start()
    secondary = FakeTwelveData(values).start()
    yield primary, secondary
    primary.stop()
    secondary.stop()


def _config_root(tmp_path: Path, primary: str, secondary: str) -> Path:
    root = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    (root / "base" / "sources.yaml").write_text(
        "providers:\n"
        "  value:\n"
        f"    - {{name: twelvedata, kind: twelvedata, priority: 10, enabled: true,"
        f" base_url: '{primary}', api_key_env: TWELVEDATA_API_KEY}}\n"
        f"    - {{name: secondary_rest, kind: twelvedata, priority: 20, enabled: true,"
        f" base_url: '{secondary}', api_key_env: TWELVEDATA_API_KEY}}\n"
        "  description: loopback test servers\n"
    )
    (root / "envs" / "prod" / "sources.yaml").unlink()
    policy = root / "base" / "pipeline_policy.yaml"
    text = policy.read_text()
    text = text.replace("backoff_initial_s: {value: 0.5,", "backoff_initial_s: {value: 0.01,")
    text = text.replace("backoff_jitter_s: {value: 0.5,", "backoff_jitter_s: {value: 0.0,")
    text = text.replace("requests_per_minute: 8, burst: 8", "requests_per_minute: 6000, burst: 100")
    policy.write_text(text)
    return root


def _ingest(root: Path, source: str, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "ingest",
            "--config-root",
            str(root),
            "--source",
            source,
            "--symbol",
            "btcusd",
            "--timeframe",
            "1h",
            *extra,
        ],
    )
    return result.exit_code, result.output


def test_auto_fails_over_and_watermark_drives_next_run(
    two_servers: tuple[FakeTwelveData, FakeTwelveData],
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, secondary = two_servers
    monkeypatch.setenv("TWELVEDATA_API_KEY", API_KEY)
    root = _config_root(tmp_path, primary.url, secondary.url)
    primary.script(
        *[Reply(status=503, json_body={"status": "error", "code": 503, "message": "down"})] * 5
    )
    code, out = _ingest(root, "auto", "--start", "2024-03-04", "--end", "2024-03-13 23:00")
    assert code == 0, out
    assert "from secondary_rest" in out
    assert "240 rows read, 0 rejected, 240 new" in out
    assert len(primary.requests) == 5  # first try + retry_max retries, then failover
    mark = json.loads((archive / "raw" / "1h" / "BTC_USD" / "_watermark.json").read_text())
    assert mark["last_ts"] == "2024-03-13T23:00:00+00:00"
    # Next run without --start continues after the watermark: the primary is healthy again.
    code, out = _ingest(root, "twelvedata", "--end", "2024-03-14 05:00")
    assert code == 0, out
    assert primary.requests[-1].params["start_date"] == "2024-03-14 00:00:00"
    assert "0 rows read" in out
    assert "canonical partitions written: 0" in out


def test_missing_api_key_is_a_clear_error(
    two_servers: tuple[FakeTwelveData, FakeTwelveData], tmp_path: Path, archive: Path
) -> None:
    primary, secondary = two_servers
    root = _config_root(tmp_path, primary.url, secondary.url)
    code, out = _ingest(root, "twelvedata", "--start", "2024-03-04", "--end", "2024-03-05")
    assert code == 2  # a setting to fix, not a failure to retry (it was 75)
    [line] = _plain(out)
    assert line == (
        "error DATA_API_AUTH_MISSING: provider 'twelvedata': environment variable "
        "TWELVEDATA_API_KEY is not set: set it to the provider's API key"
    )
    assert primary.requests == []


def test_inverted_window_is_refused(
    two_servers: tuple[FakeTwelveData, FakeTwelveData],
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, secondary = two_servers
    monkeypatch.setenv("TWELVEDATA_API_KEY", API_KEY)
    root = _config_root(tmp_path, primary.url, secondary.url)
    code, out = _ingest(root, "auto", "--start", "2024-03-06", "--end", "2024-03-05")
    assert code == 2
    assert "is after end" in out
    assert primary.requests == [] and secondary.requests == []


def _refusal(status: int) -> Reply:
    # TwelveData's own error body, quoting the key back as a careless server might.
    return Reply(status, json_body={"status": "error", "code": status,
                                    "message": f"**apikey** {API_KEY} is not valid"})  # fmt: skip


def _plain(out: str) -> list[str]:
    """The lines for a person (the JSON log lines left out)."""
    return [line for line in out.splitlines() if line and not line.startswith("{")]


@pytest.mark.parametrize(
    ("status", "code"), [(401, "DATA_API_UNAUTHORIZED"), (403, "DATA_API_FORBIDDEN")]
)
def test_a_refused_key_ends_69_in_one_line_without_the_key(
    two_servers: tuple[FakeTwelveData, FakeTwelveData],
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    code: str,
) -> None:
    primary, secondary = two_servers
    monkeypatch.setenv("TWELVEDATA_API_KEY", API_KEY)
    root = _config_root(tmp_path, primary.url, secondary.url)
    primary.script(_refusal(status))
    exit_code, out = _ingest(root, "twelvedata", "--start", "2024-03-04", "--end", "2024-03-05")
    assert exit_code == 69, out
    [line] = _plain(out)
    assert line.startswith(f"error {code}: twelvedata BTC/USD 1h ["), line
    assert f"HTTP {status}" in line
    assert API_KEY not in out
    assert "internal error" not in out and "Traceback" not in out
    assert len(primary.requests) == 1  # a refusal is not retried
    assert secondary.requests == []


def test_auto_fails_over_a_refused_key_and_names_the_refusal_when_all_fail(
    two_servers: tuple[FakeTwelveData, FakeTwelveData],
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, secondary = two_servers
    monkeypatch.setenv("TWELVEDATA_API_KEY", API_KEY)
    root = _config_root(tmp_path, primary.url, secondary.url)
    window = ("--start", "2024-03-04", "--end", "2024-03-04 23:00")
    primary.script(_refusal(401))
    exit_code, out = _ingest(root, "auto", *window)
    assert exit_code == 0, out
    assert "from secondary_rest" in out  # the secondary is tried, and serves

    # The secondary only down for now: the refusal still needs a person, so it is the answer.
    primary.script(_refusal(401))
    secondary.script(*[Reply(503, json_body={"status": "error", "code": 503})] * 5)
    exit_code, out = _ingest(root, "auto", *window)
    assert exit_code == 69, out
    [line] = _plain(out)
    assert line.startswith("error DATA_API_UNAUTHORIZED: twelvedata BTC/USD 1h ["), line
    assert "HTTP 401" in line
    assert "every provider failed: twelvedata: DATA_API_UNAUTHORIZED; secondary_rest: " \
        "DATA_API_SERVER_ERROR" in line  # fmt: skip
    assert API_KEY not in out


def test_an_answer_of_which_no_row_is_accepted_is_bad_data(
    two_servers: tuple[FakeTwelveData, FakeTwelveData],
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review: a data API answering rows of which none passed (prices of 1e400, NaN, -1) ended
    exit 0, as a file did before issue 16; an answer without rows stays a quiet period."""
    primary, secondary = two_servers
    monkeypatch.setenv("TWELVEDATA_API_KEY", API_KEY)
    root = _config_root(tmp_path, primary.url, secondary.url)
    bad = [{"datetime": f"2024-03-04 0{h}:00:00", "open": "1e400", "high": "nan", "low": "-1",
            "close": "1"} for h in range(5)]  # fmt: skip
    primary.script(Reply(200, json_body={"meta": {}, "values": bad, "status": "ok"}))
    exit_code, out = _ingest(root, "twelvedata", "--start", "2024-03-04", "--end", "2024-03-05")
    assert exit_code == 65, out
    assert "error DATA_API_NOTHING_ACCEPTED: twelvedata: none of its 5 rows was accepted" in out
    assert "internal error" not in out and "Traceback" not in out
    primary.script(Reply(200, json_body=NO_DATA))
    exit_code, out = _ingest(root, "twelvedata", "--start", "2024-03-06", "--end", "2024-03-07")
    assert exit_code == 0, out
