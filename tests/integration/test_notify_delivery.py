"""The notification outbox delivered over real HTTP to a loopback receiver playing Slack and
PagerDuty (started, stopped and started again by the test), on SQLite and real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from mlcore.config import AppConfig, SlackPolicy
from mlcore.observability import (
    Destinations,
    Notifier,
    _notify_metrics,
    claim_next,
    counts,
    listing,
)
from mlcore.registry import Alerts, NotifyTarget, _alerts, make_engine, upgrade
from mlcore.registry._tables import notifications
from tests.conftest import free_port, postgres_url
from tests.integration._notify_receiver import Answer, Receiver

PD_KEY = "0123456789abcdef0123456789abcdef"


def fast_policy(cfg: AppConfig, receiver: Receiver) -> SlackPolicy:
    """The shipped policy with a short backoff and the receiver as PagerDuty."""
    d = cfg.slack.delivery.model_copy(update={
        "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2, "timeout_seconds": 2.0,
        "stuck_after_attempts": 3, "lease_seconds": 5.0,
    })  # fmt: skip
    pd = cfg.slack.pagerduty.model_copy(update={"events_url": receiver.url("/pd")})
    return cfg.slack.model_copy(update={"delivery": d, "pagerduty": pd})


def notifier(engine: Engine, policy: SlackPolicy, receiver: Receiver) -> Notifier:
    return Notifier(
        engine, policy, Destinations(receiver.url("/slack"), receiver.url("/pd"), PD_KEY)
    )


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade(e)
    return e


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_url()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


def rows(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        q = select(notifications).order_by(notifications.c.created_at)
        return [dict(r._mapping) for r in conn.execute(q)]


def drain(n: Notifier, seconds: float = 10.0) -> None:
    """Run passes until nothing is pending (or ``seconds`` have gone)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n.run_once()
        c = counts(n.engine)
        if not any(s in ("pending", "sending") for (_t, s) in c):
            return
        time.sleep(0.05)
    raise AssertionError(f"not drained in {seconds} s: {counts(n.engine)}")


def test_payloads_channels_and_dedup_key(
    engine: Engine, cfg: AppConfig, receiver: Receiver
) -> None:
    receiver.start()
    alerts = Alerts(engine)
    hostile = "flatten <!channel> & <http://x|go>"
    alerts.raise_alert("CORE_DD_FLATTEN", hostile, channel="serving", severity="critical",
                       details={"pair_id": "EUR_USD", "drawdown": 0.1})  # fmt: skip
    alerts.raise_alert("CORE_DD_FLATTEN", "again", channel="serving", severity="critical",
                       details={"pair_id": "EUR_USD"})  # fmt: skip
    alerts.raise_alert("CORE_NOTE", "fyi", channel="analytics", severity="info")
    report = notifier(engine, fast_policy(cfg, receiver), receiver).run_once()
    assert (report.delivered, report.retried, report.failed) == (5, 0, 0)
    slack = receiver.delivered("/slack")
    assert [b["channel"] for b in slack] == ["#risk-alerts", "#risk-alerts", "#analytics-info"]
    assert "&lt;!channel&gt; &amp; &lt;http://x|go&gt;" in slack[0]["text"]
    assert "<" not in slack[0]["text"]
    assert slack[0]["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": slack[0]["text"]}}
    ]
    assert slack[0]["text"].startswith("*[critical] drawdown: CORE_DD_FLATTEN*")
    pd = receiver.delivered("/pd")
    assert len(pd) == 2  # the info alert pages nobody
    assert {e["dedup_key"] for e in pd} == {"CORE_DD_FLATTEN/pair_id:EUR_USD"}
    first = pd[0]
    assert first["routing_key"] == PD_KEY and first["event_action"] == "trigger"
    assert set(first["payload"]) >= {"summary", "source", "severity", "timestamp", "custom_details"}
    assert first["payload"]["severity"] == "critical"
    assert first["payload"]["source"] == "ml-assets-core"
    assert first["payload"]["custom_details"]["details"]["drawdown"] == 0.1
    stored = rows(engine)
    assert {r["status"] for r in stored} == {"delivered"}
    assert all(r["attempts"] == 1 for r in stored)
    assert all("routing_key" not in (r["payload"] or {}) for r in stored)  # the secret is not kept


def _raise(engine: Engine, n: int, severity: str = "critical") -> list[str]:
    return [Alerts(engine).raise_alert(f"CORE_T_{i}", f"alert {i}", channel="t",
                                       severity=severity) for i in range(n)]  # fmt: skip


def test_receiver_down_then_back_delivers_each_once_in_order(
    engine: Engine, cfg: AppConfig, receiver: Receiver
) -> None:
    ids = _raise(engine, 4)
    n = notifier(engine, fast_policy(cfg, receiver), receiver)
    for _ in range(3):  # the receiver is down: refused connections
        report = n.run_once()
        assert report.delivered == 0 and report.retried == 2
        time.sleep(0.25)
    pending = listing(engine, ("pending",), 100)
    assert len(pending) == 8
    heads = [r for r in pending if r.alert_id == ids[0]]
    assert [r.attempts for r in heads] == [3, 3]  # only each destination's head was tried
    assert all("ConnectError" in (r.last_error or "") for r in heads)
    assert all(r.attempts == 0 for r in pending if r.alert_id != ids[0])
    receiver.start()
    drain(n)
    slack, pd = receiver.delivered("/slack"), receiver.delivered("/pd")
    assert [b["text"].split("* ")[1] for b in slack] == [f"alert {i}" for i in range(4)]
    assert [e["payload"]["custom_details"]["alert_id"] for e in pd] == ids
    assert len(receiver.received) == 8  # exactly once each


def test_500_then_200(engine: Engine, cfg: AppConfig, receiver: Receiver) -> None:
    receiver.start()
    receiver.script["/slack"].append(Answer(500, b"internal"))
    _raise(engine, 1, "warning")
    n = notifier(engine, fast_policy(cfg, receiver), receiver)
    assert n.run_once().retried == 1
    (row,) = rows(engine)
    assert (row["status"], row["attempts"], row["last_error"]) == (
        "pending",
        1,
        "HTTP 500: internal",
    )
    drain(n)
    (row,) = rows(engine)
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [r.answered for r in receiver.received] == [500, 200]


def test_429_waits_out_retry_after(engine: Engine, cfg: AppConfig, receiver: Receiver) -> None:
    receiver.start()
    receiver.script["/pd"].append(Answer(429, b"slow down", {"Retry-After": "1"}))
    _raise(engine, 1)
    n = notifier(engine, fast_policy(cfg, receiver), receiver)
    n.run_once()
    pd_row = next(r for r in rows(engine) if r["target"] == "pagerduty")
    assert pd_row["status"] == "pending"
    time.sleep(0.3)  # past the 0.05-0.2 s backoff, within Retry-After
    n.run_once()
    assert len([r for r in receiver.received if r.path == "/pd"]) == 1
    time.sleep(0.9)
    n.run_once()
    assert [r.answered for r in receiver.received if r.path == "/pd"] == [429, 202]


def test_400_fails_for_good_and_the_queue_moves_on(
    engine: Engine, cfg: AppConfig, receiver: Receiver
) -> None:
    receiver.start()
    receiver.script["/slack"].append(Answer(400, b"invalid_payload"))
    _raise(engine, 2, "warning")
    n = notifier(engine, fast_policy(cfg, receiver), receiver)
    report = n.run_once()
    assert (report.failed, report.delivered) == (1, 1)
    first, second = rows(engine)
    assert first["status"] == "failed" and first["last_error"] == "HTTP 400: invalid_payload"
    assert second["status"] == "delivered"
    assert listing(engine, ("failed",), 10)[0].code == "CORE_T_0"


def test_garbage_reply_is_retried(engine: Engine, cfg: AppConfig, receiver: Receiver) -> None:
    receiver.start()
    receiver.script["/slack"].append(Answer(raw=b"\x00\xffnot http at all\r\n\r\n"))
    _raise(engine, 1, "info")
    n = notifier(engine, fast_policy(cfg, receiver), receiver)
    assert n.run_once().retried == 1
    drain(n)
    (row,) = rows(engine)
    assert (row["status"], row["attempts"]) == ("delivered", 2)


def test_dns_failure_and_missing_secrets_leave_rows_pending(engine: Engine, cfg: AppConfig) -> None:
    _raise(engine, 1)
    policy = cfg.slack
    n = Notifier(engine, policy, Destinations("https://no-such-host.invalid/hook", "x", None))
    report = n.run_once()
    assert report.waiting["pagerduty"] == "PAGERDUTY_INTEGRATION_KEY is not set"
    assert "ConnectError" in report.waiting["slack"]
    by_target = {r["target"]: r for r in rows(engine)}
    assert by_target["slack"]["attempts"] == 1 and by_target["slack"]["status"] == "pending"
    assert by_target["pagerduty"]["attempts"] == 0
    quiet = Notifier(engine, policy, Destinations(None, "x", None)).run_once()
    assert quiet.waiting["slack"] == "SLACK_WEBHOOK_URL is not set"


def _concurrent(url: str, cfg: AppConfig, receiver: Receiver) -> None:
    setup = make_engine(url)
    upgrade(setup)
    ids = _raise(setup, 15)
    receiver.start()
    policy = fast_policy(cfg, receiver)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            drain(notifier(make_engine(url), policy, receiver), 20)
        except BaseException as exc:  # named in the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(receiver.received) == 30  # each row once
    pd = [e["payload"]["custom_details"]["alert_id"] for e in receiver.delivered("/pd")]
    assert pd == ids  # in order
    assert [b["text"].split("* ")[1] for b in receiver.delivered("/slack")] == [
        f"alert {i}" for i in range(15)
    ]


def test_two_notifiers_on_postgres_send_each_row_once(
    pg_url: str, cfg: AppConfig, receiver: Receiver
) -> None:
    _concurrent(pg_url, cfg, receiver)


def test_two_notifiers_on_sqlite_send_each_row_once(
    tmp_path: Path, cfg: AppConfig, receiver: Receiver
) -> None:
    _concurrent(f"sqlite:///{tmp_path / 'registry.db'}", cfg, receiver)


def test_a_send_cut_short_is_taken_again_after_its_lease(
    engine: Engine, cfg: AppConfig, receiver: Receiver
) -> None:
    """A notifier that died between claiming and recording: its row waits out the lease,
    then another notifier sends it (PagerDuty's dedup key absorbs a repeat)."""
    receiver.start()
    _raise(engine, 1, "info")
    policy = fast_policy(cfg, receiver)
    now = datetime.now(UTC)
    held = claim_next(engine, NotifyTarget.SLACK, now, policy.delivery.lease_seconds)
    assert held is not None  # ... and its process dies here
    assert notifier(engine, policy, receiver).run_once().delivered == 0  # leased: not taken
    later = now + timedelta(seconds=policy.delivery.lease_seconds + 1)
    n = Notifier(engine, policy, Destinations(receiver.url("/slack"), receiver.url("/pd"), PD_KEY),
                 clock=lambda: later)  # fmt: skip
    assert n.run_once().delivered == 1
    (row,) = rows(engine)
    assert (row["status"], row["attempts"]) == ("delivered", 1)


def test_stuck_rows_are_logged_and_counted_not_alerted(
    engine: Engine, cfg: AppConfig, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    _raise(engine, 1, "warning")
    n = notifier(engine, fast_policy(cfg, receiver), receiver)  # receiver never started
    before = _notify_metrics.STUCK.labels(target="slack")._value.get()
    with caplog.at_level("WARNING", logger="mlcore.notify"):
        for _ in range(4):
            n.run_once()
            time.sleep(0.22)
    stuck = [r for r in caplog.records if "NOTIFY_DELIVERY_STUCK" in r.getMessage()]
    assert len(stuck) == 2  # tries 3 and 4 (stuck_after_attempts: 3)
    assert _notify_metrics.STUCK.labels(target="slack")._value.get() == before + 2
    assert len(Alerts(engine).recent()) == 1  # no alert about the alert
    (row,) = rows(engine)
    assert (row["status"], row["attempts"]) == ("pending", 4)  # never given up


def test_an_alert_is_never_recorded_without_its_notifications(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> list[str]:
        raise RuntimeError("the outbox insert failed")

    monkeypatch.setattr(_alerts, "enqueue", broken)
    with pytest.raises(RuntimeError, match="outbox insert failed"):
        Alerts(engine).raise_alert("CORE_X", "m", channel="t", severity="critical")
    assert Alerts(engine).recent() == [] and rows(engine) == []  # one transaction: neither


def test_a_huge_or_dripping_reply_holds_no_notifier(
    engine: Engine, cfg: AppConfig, receiver: Receiver
) -> None:
    receiver.start()
    receiver.script["/slack"].append(Answer(400, b"x" * 20_000_000))
    receiver.script["/slack"].append(Answer(503, b"slow" * 100, drip_s=0.05))
    _raise(engine, 2, "info")
    n = notifier(engine, fast_policy(cfg, receiver), receiver)  # timeout 2 s
    started = time.monotonic()
    report = n.run_once()
    assert time.monotonic() - started < 5  # the drip alone would take 20 s
    assert (report.failed, report.retried) == (1, 1)
    first, second = rows(engine)
    assert first["status"] == "failed" and first["last_error"] == "HTTP 400: " + "x" * 300
    assert second["status"] == "pending" and str(second["last_error"]).startswith("HTTP 503: slow")
