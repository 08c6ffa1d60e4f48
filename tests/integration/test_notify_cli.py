"""`mlcore notify test / status / run` against a loopback receiver: without the secrets the rows
wait and `status` says why; with them, `notify run --once` delivers what waited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from mlcore.cli import _notify as notify_cli
from mlcore.cli import app
from mlcore.observability import Notifier
from tests.conftest import CONFIG_ROOT, config_with, free_port
from tests.integration._notify_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port()).start()
    yield r
    r.stop()


def _cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["notify", *args])
    assert "Traceback" not in result.output
    return result.exit_code, [ln for ln in result.output.splitlines() if not ln.startswith("{")]


def test_test_status_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    root = config_with(
        tmp_path, {"slack_policy": {"pagerduty": {"events_url": receiver.url("/pd")}}}
    )
    monkeypatch.setenv("MLCORE_CONFIG_ROOT", str(root))
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    code, out = _cli("test", "--severity", "critical", "--message", "drill <!here>")
    assert code == 0
    assert "slack: SLACK_WEBHOOK_URL is not set" in out
    assert "pagerduty: PAGERDUTY_INTEGRATION_KEY is not set" in out
    code, out = _cli("status")
    assert code == 0
    assert "slack pending: 1" in out and "pagerduty pending: 1" in out
    assert any(
        ln.startswith("pending slack NOTIFY_TEST (critical)") and "tries 0" in ln for ln in out
    )
    assert receiver.received == []

    monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url("/slack"))
    monkeypatch.setenv("PAGERDUTY_INTEGRATION_KEY", "B" * 32)
    code, out = _cli("run", "--once")
    assert (code, out) == (0, ["delivered 2, retrying 0, failed 0"])
    [slack] = receiver.delivered("/slack")
    assert slack["channel"] == "#risk-alerts" and "drill &lt;!here&gt;" in slack["text"]
    assert receiver.delivered("/pd")[0]["dedup_key"] == "NOTIFY_TEST/global"
    code, out = _cli("status")
    assert "slack delivered: 1" in out and "pagerduty delivered: 1" in out


def test_bad_severity_and_bad_secret_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCORE_CONFIG_ROOT", str(CONFIG_ROOT))
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    code, out = _cli("test", "--severity", "loud")
    assert code == 2 and "NOTIFY_REQUEST_SEVERITY_INVALID" in out[-1]
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://hooks.example.com/T0/B0/secretvalue")
    result = CliRunner().invoke(app, ["notify", "status"])
    assert result.exit_code == 2
    assert "SLACK_WEBHOOK_URL must be https://" in result.output.splitlines()[-1]
    assert "secretvalue" not in result.output  # nor in the JSON log line


def test_run_loop_outlives_a_database_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """`notify run` (no --once) is a daemon: a pass that fails (the database away) is a line,
    and the next pass delivers. Ctrl-C ends it between passes."""
    monkeypatch.setenv("MLCORE_CONFIG_ROOT", str(CONFIG_ROOT))
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    assert _cli("test")[0] == 0  # pending: no secret yet
    monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url("/slack"))
    real = Notifier.run_once
    calls = {"pass": 0, "sleep": 0}

    def flaky(self: Notifier, budget_s: float | None = None) -> object:
        calls["pass"] += 1
        if calls["pass"] == 1:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return real(self, budget_s)

    def sleep(_s: float) -> None:
        calls["sleep"] += 1
        if calls["sleep"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Notifier, "run_once", flaky)
    monkeypatch.setattr(notify_cli.time, "sleep", sleep)
    code, out = _cli("run", "--interval", "0.1")
    assert code == 0
    assert out[0] == "not delivered this pass (OperationalError): server closed the connection"
    assert out[1].startswith("delivered 1, retrying 0, failed 0")
    assert len(receiver.delivered("/slack")) == 1
