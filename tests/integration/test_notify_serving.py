"""`mlcore serve`'s supervisor delivers the notification outbox from its watch loop, on a
thread of its own, at most every NOTIFY_EVERY_S."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mlcore.config import load_config
from mlcore.observability._notify_metrics import DELIVERIES
from mlcore.registry import registry_for
from mlcore.serving._supervisor import NOTIFY_EVERY_S, Supervisor
from tests.conftest import CONFIG_ROOT, free_port
from tests.integration._notify_receiver import Receiver


def test_the_supervisor_delivers_alerts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver(free_port()).start()
    try:
        monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
        monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url("/slack"))
        cfg = load_config(CONFIG_ROOT, "dev")
        reg = registry_for(cfg)
        reg.raise_alert("CORE_SERVING_WORKER_GIVEN_UP", "w0 died", channel="serving",
                        severity="warning", details={"worker": "w0"})  # fmt: skip
        sup = Supervisor(cfg, [])
        sup.notify()
        first = sup._notifier
        assert first is not None
        first.join(10)
        reg.raise_alert("CORE_SERVING_X", "second", channel="serving", severity="info")
        sup.notify()  # within NOTIFY_EVERY_S of the last pass: not yet
        assert NOTIFY_EVERY_S > 0.5 and sup._notifier is first  # no second pass started
        texts = [b["text"] for b in receiver.delivered("/slack")]
        assert texts == ["*[warning] serving: CORE_SERVING_WORKER_GIVEN_UP* w0 died"]
    finally:
        receiver.stop()


def test_the_serving_endpoint_shows_the_notifier_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "unused"))  # put back after
    cfg = load_config(CONFIG_ROOT, "dev")
    port = free_port()
    Supervisor(cfg, []).serve_metrics(port)
    DELIVERIES.labels(target="slack", outcome="failed").inc()
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'notify_deliveries_total{outcome="failed",target="slack"}' in text
    assert "# TYPE notify_delivery_stuck_total counter" in text
