"""Observability: Prometheus metrics, structured logs, and the notifications of every alert
(Slack, PagerDuty) through the ``audit.notifications`` outbox."""

from mlcore.observability._notify import (
    STUCK,
    Destinations,
    Notifier,
    PassReport,
    Verdict,
    backoff_seconds,
    deliver_pending,
    judge,
    retry_after_seconds,
)
from mlcore.observability._notify_metrics import NOTIFY_METRICS
from mlcore.observability._outbox import Claim, OutboxRow, claim_next, counts, listing
from mlcore.observability._templates import (
    AlertView,
    clean_text,
    cut,
    escape_mrkdwn,
    pagerduty_event,
    render_text,
    slack_body,
    template_for,
)

__all__ = [
    "NOTIFY_METRICS",
    "STUCK",
    "AlertView",
    "Claim",
    "Destinations",
    "Notifier",
    "OutboxRow",
    "PassReport",
    "Verdict",
    "backoff_seconds",
    "claim_next",
    "clean_text",
    "counts",
    "cut",
    "deliver_pending",
    "escape_mrkdwn",
    "judge",
    "listing",
    "pagerduty_event",
    "render_text",
    "retry_after_seconds",
    "slack_body",
    "template_for",
]
