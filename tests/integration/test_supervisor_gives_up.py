"""A worker that keeps dying is given up after max_restarts_per_hour, with a log line, an event
and an alert, and `serve` reports it (the CLI then ends non-zero)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.config import load_config
from mlcore.registry import Alerts, database_url, make_engine, upgrade
from mlcore.serving import Supervisor, WorkerSpec
from tests.conftest import config_with


def test_a_worker_that_keeps_dying_is_given_up_with_an_alert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("SERVICE_ENV", "MLCORE_CONFIG_ROOT", "REDIS_URL", "POSTGRES_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    workers = {"pairs_per_worker": 5, "restart_delay_seconds": 0.0, "max_restarts_per_hour": 2,
               "checkpoint_every_seconds": 0.5}  # fmt: skip
    root = config_with(tmp_path, {"serving_policy": {"workers": workers}})
    cfg = load_config(root, "dev")
    upgrade(make_engine(database_url(cfg)))  # as `serve` does before it starts any worker
    # A pair the universe does not have: the worker dies at start, every time.
    spec = WorkerSpec("worker-0", ("NOPE_PAIR",), str(root), "dev", str(tmp_path / "none"),
                      (0.6, 0.5), root=str(tmp_path / "archive" / "serving"))  # fmt: skip
    sup = Supervisor(cfg, [spec])
    sup.run(lambda: False, poll_seconds=0.1)  # ends once every worker is done or given up
    assert sup.given_up == ["worker-0"]
    assert sum("exited with 1: restarting" in e for e in sup.events) == 2
    assert any("not restarted again; pairs NOPE_PAIR are not served" in e for e in sup.events)
    [alert] = Alerts(make_engine(database_url(cfg))).recent("CORE_SERVING_WORKER_GIVEN_UP")
    assert "worker-0" in alert.message and alert.details == {
        "worker": "worker-0",
        "pairs": ["NOPE_PAIR"],
    }
