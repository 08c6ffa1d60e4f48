"""Deliver the notification outbox: Slack incoming webhook and PagerDuty Events v2 over HTTP.

A 2xx is delivered; a 4xx other than 429 is refused for good (``failed``, with the reason, a
log line and a metric); a 5xx, 429 (its Retry-After respected), timeout, refused connection,
DNS failure or a reply that is not HTTP is retried with capped exponential backoff, for ever:
after ``stuck_after_attempts`` tries a ``NOTIFY_DELIVERY_STUCK`` log line and metric say so
(never an alert: that would feed the outbox it is about). A destination without its secret
(SLACK_WEBHOOK_URL, PAGERDUTY_INTEGRATION_KEY unset, as in dev) is left pending."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy import Engine

from mlcore.config import EnvSettings, SlackPolicy
from mlcore.observability import _notify_metrics as metrics
from mlcore.observability._outbox import Claim, claim_next, mark_delivered, mark_failed, mark_retry
from mlcore.observability._templates import pagerduty_event, slack_body
from mlcore.registry._alerts import NotifyTarget

log = logging.getLogger("mlcore.notify")
STUCK = "NOTIFY_DELIVERY_STUCK"
_ERROR_BODY_CHARS = 300
_MAX_REPLY_BYTES = 4096  # of a receiver's reply, read to say why it refused
_KEPT_HEADERS = frozenset({"retry-after", "content-type"})


@dataclass(frozen=True)
class Destinations:
    """Where each target is sent (None: its secret is not set; its rows wait)."""

    slack_url: str | None
    pagerduty_url: str
    pagerduty_key: str | None

    @classmethod
    def from_env(cls, env: EnvSettings, policy: SlackPolicy) -> Destinations:
        """The webhook and routing key of ENV, the Events URL of the policy."""
        return cls(env.slack_webhook_url, policy.pagerduty.events_url,
                   env.pagerduty_integration_key)  # fmt: skip

    def missing(self, target: NotifyTarget) -> str | None:
        """Why ``target`` cannot be sent now (None: it can)."""
        if target is NotifyTarget.SLACK and not self.slack_url:
            return "SLACK_WEBHOOK_URL is not set"
        if target is NotifyTarget.PAGERDUTY and not self.pagerduty_key:
            return "PAGERDUTY_INTEGRATION_KEY is not set"
        return None


@dataclass(frozen=True)
class Verdict:
    """What one send came to: delivered, retry (after ``wait_s`` at least) or failed."""

    outcome: str
    reason: str = ""
    wait_s: float | None = None


@dataclass
class PassReport:
    """One delivery pass: rows per outcome, and the targets left waiting with why."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    waiting: dict[str, str] = field(default_factory=dict)


def backoff_seconds(attempts: int, policy: SlackPolicy) -> float:
    """The wait after the ``attempts``-th failed try: min(max, base * factor^(attempts-1))."""
    d = policy.delivery
    exponent = max(0, attempts - 1)
    if exponent > 64:  # factor**exponent would only overflow past the cap
        return d.backoff_max_seconds
    return float(min(d.backoff_max_seconds, d.backoff_base_seconds * d.backoff_factor**exponent))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds; None when absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 10**7))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _snippet(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # a body that cannot be decoded says nothing more
        return ""
    return " ".join(text.split())[:_ERROR_BODY_CHARS]


def judge(response: httpx.Response, now: datetime) -> Verdict:
    """The verdict of a receiver's answer (pure but for reading its body)."""
    code = response.status_code
    if 200 <= code < 300:
        return Verdict("delivered")
    reason = f"HTTP {code}: {_snippet(response)}".rstrip(": ")
    if code == 429:
        return Verdict(
            "retry", reason, retry_after_seconds(response.headers.get("retry-after"), now)
        )
    if code >= 500:
        return Verdict("retry", reason)
    return Verdict("failed", reason)


def _body(claim: Claim, policy: SlackPolicy, dest: Destinations) -> tuple[str, dict[str, Any]]:
    if claim.target is NotifyTarget.SLACK:
        return str(dest.slack_url), slack_body(policy, claim.alert)
    event = pagerduty_event(policy, claim.alert, claim.dedup_key, str(dest.pagerduty_key))
    return dest.pagerduty_url, event


def _head(response: httpx.Response, deadline: float) -> bytes:
    """The reply's first _MAX_REPLY_BYTES, read until ``deadline`` (monotonic) at most: a
    receiver sending gigabytes, or one byte at a time, holds no notifier."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= _MAX_REPLY_BYTES or time.monotonic() > deadline:
            break
    return head[:_MAX_REPLY_BYTES]


def send(
    client: httpx.Client, url: str, body: dict[str, Any], now: datetime, timeout_s: float
) -> Verdict:
    """POST ``body``; its verdict. Network failures are retried (never raised)."""
    deadline = time.monotonic() + timeout_s
    try:
        with client.stream("POST", url, json=body) as response:
            head = _head(response, deadline)
            keep = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
            reply = httpx.Response(response.status_code, headers=keep, content=head)
    except httpx.TimeoutException:
        return Verdict("retry", "timed out")
    except httpx.HTTPError as exc:  # refused, DNS failure, not HTTP, reset
        return Verdict("retry", f"{type(exc).__name__}: {str(exc)[:_ERROR_BODY_CHARS]}")
    return judge(reply, now)


class Notifier:
    """Deliver due outbox rows (one pass per :meth:`run_once`)."""

    def __init__(
        self, engine: Engine, policy: SlackPolicy, dest: Destinations,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:  # fmt: skip
        self.engine, self.policy, self.dest, self.clock = engine, policy, dest, clock

    def run_once(self, budget_s: float | None = None) -> PassReport:
        """Send every due row (each destination in order) until none is due, a destination
        must wait, or ``budget_s`` seconds have gone; never raises for a receiver's fault."""
        report = PassReport()
        started = time.monotonic()
        d = self.policy.delivery
        with httpx.Client(timeout=d.timeout_seconds, follow_redirects=False) as client:
            for target in NotifyTarget:
                why = self.dest.missing(target)
                if why is not None:
                    report.waiting[target.value] = why
                    continue
                for _ in range(d.batch_size):
                    if budget_s is not None and time.monotonic() - started > budget_s:
                        report.waiting[target.value] = "out of time for this pass"
                        break
                    claim = claim_next(self.engine, target, self.clock(), d.lease_seconds)
                    if claim is None or not self._deliver(client, claim, report):
                        break
        return report

    def _deliver(self, client: httpx.Client, claim: Claim, report: PassReport) -> bool:
        """Send one claimed row and record it; False when its destination must wait."""
        url, body = _body(claim, self.policy, self.dest)
        verdict = send(client, url, body, self.clock(), self.policy.delivery.timeout_seconds)
        now = self.clock()
        kept = {k: v for k, v in body.items() if k != "routing_key"}  # the secret stays out
        channel = body.get("channel") if claim.target is NotifyTarget.SLACK else None
        target = claim.target.value
        metrics.DELIVERIES.labels(target=target, outcome=verdict.outcome).inc()
        if verdict.outcome == "delivered":
            mark_delivered(self.engine, claim, now, channel, kept)
            report.delivered += 1
            return True
        if verdict.outcome == "failed":
            mark_failed(self.engine, claim, verdict.reason, channel, kept)
            log.error("notification %s to %s refused for good: %s (alert %s %s)",
                      claim.notification_id, target, verdict.reason, claim.alert.code,
                      claim.alert.alert_id)  # fmt: skip
            report.failed += 1
            return True
        attempts = claim.attempts + 1
        wait = backoff_seconds(attempts, self.policy)
        if verdict.wait_s is not None:
            wait = max(wait, min(verdict.wait_s, self.policy.delivery.retry_after_max_seconds))
        mark_retry(self.engine, claim, verdict.reason, now + timedelta(seconds=wait))
        report.retried += 1
        report.waiting[target] = f"{verdict.reason} (try {attempts}; next in {wait:g} s)"
        if attempts >= self.policy.delivery.stuck_after_attempts:
            metrics.STUCK.labels(target=target).inc()
            log.warning("%s: notification %s to %s not delivered after %d tries: %s",
                        STUCK, claim.notification_id, target, attempts, verdict.reason)  # fmt: skip
        return False


def deliver_pending(
    engine: Engine, policy: SlackPolicy, env: EnvSettings, budget_s: float | None = None
) -> PassReport | None:
    """One delivery pass for flows and serving: never raises (a database away, a bug in a
    receiver's reply: logged, the rows stay for the next pass); None when it failed."""
    try:
        return Notifier(engine, policy, Destinations.from_env(env, policy)).run_once(budget_s)
    except Exception as exc:
        why = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300] if str(exc) else ""
        log.warning("notifications not delivered this pass (%s): %s", type(exc).__name__, why)
        return None
