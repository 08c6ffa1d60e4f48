"""A failing retraining run notifies at its end, without a separate daemon: each failure goes
to Slack, and the two-failure stop (critical) also pages PagerDuty with the run as its scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcore.config import load_config
from mlcore.flows import RETRAIN_FAILED, RETRAIN_STOPPED, run_retrain
from mlcore.observability import counts
from mlcore.registry import registry_for
from tests.conftest import config_with, free_port
from tests.integration._notify_receiver import Receiver

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port()).start()
    yield r
    r.stop()


def test_failed_runs_and_the_stop_are_delivered_by_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url("/slack"))
    monkeypatch.setenv("PAGERDUTY_INTEGRATION_KEY", "f" * 32)
    root = config_with(
        tmp_path, {"slack_policy": {"pagerduty": {"events_url": receiver.url("/pd")}}}
    )
    cfg = load_config(root, "dev")
    for _ in range(2):
        with pytest.raises(ValueError, match=r"no pair of universe\.yaml has 1h bars"):
            run_retrain(cfg)
    texts = [b["text"] for b in receiver.delivered("/slack")]
    assert [t.split("* ")[0] for t in texts] == [
        f"*[error] retraining: {RETRAIN_FAILED}",
        f"*[error] retraining: {RETRAIN_FAILED}",
        f"*[critical] retraining: {RETRAIN_STOPPED}",
    ]
    assert [b["channel"] for b in receiver.delivered("/slack")] == [
        "#ml-ops",
        "#ml-ops",
        "#risk-alerts",
    ]
    [page] = receiver.delivered("/pd")
    run_id = registry_for(cfg).runs()[0]["run_id"]
    assert page["dedup_key"] == f"{RETRAIN_STOPPED}/run:{run_id}"
    assert page["payload"]["severity"] == "critical"
    assert counts(registry_for(cfg).engine) == {
        ("slack", "delivered"): 3,
        ("pagerduty", "delivered"): 1,
    }
