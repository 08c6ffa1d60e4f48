"""The notification bodies, as pure functions of an alert and the policy: Slack's webhook JSON
(mrkdwn, escaped) and PagerDuty's Events v2 event. Alert text is data, never template text."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlcore.config import SlackPolicy

#: PagerDuty's limit on ``payload.summary``.
PD_SUMMARY_CHARS = 1024
#: custom_details larger than this (as JSON) are cut to their head (PD takes 512 KB in all).
PD_DETAILS_CHARS = 16_000
_FIELD_RE = re.compile(r"\{([a-z_]+)\}")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_PD_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
_ELLIPSIS = "…"


@dataclass(frozen=True)
class AlertView:
    """What a notification says about its alert (read from ``audit.alerts``)."""

    alert_id: str
    code: str
    severity: str
    source: str  # the alert's own channel (retrain, serving ...): who raised it
    message: str
    run_id: str | None
    raised_at: datetime
    details: dict[str, Any] | None
    scope: str


def clean_text(text: str) -> str:
    """``text`` as UTF-8-safe printable text: lone surrogates (bytes that were not UTF-8)
    become U+FFFD; control characters other than newline and tab are dropped."""
    text = _SURROGATE_RE.sub("\ufffd", text)
    return "".join(c for c in text if c in "\n\t" or not unicodedata.category(c).startswith("C"))


def escape_mrkdwn(text: str) -> str:
    """Slack's three escapes: ``&``, ``<`` and ``>`` (so ``<!channel>`` or a link is text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ending in an ellipsis when cut, never inside
    an escape (``&amp;``)."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    amp = head.rfind("&", max(0, len(head) - 5))
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + _ELLIPSIS


def template_for(policy: SlackPolicy, code: str) -> str:
    """The template of the longest code family (prefix) that ``code`` starts with."""
    families = [k for k in policy.templates if k != "default" and code.startswith(k)]
    return policy.templates[max(families, key=len)] if families else policy.templates["default"]


def _values(alert: AlertView) -> dict[str, str]:
    return {
        "code": alert.code, "message": alert.message, "severity": alert.severity,
        "source": alert.source, "run_id": alert.run_id or "-", "scope": alert.scope,
        "raised_at": alert.raised_at.isoformat(timespec="seconds"), "alert_id": alert.alert_id,
    }  # fmt: skip


def render_text(template: str, alert: AlertView, limit: int) -> str:
    """The template with each ``{field}`` replaced by the alert's value, cleaned and escaped,
    in one pass (a value holding ``{code}`` stays as written); at most ``limit`` characters."""
    values = {k: escape_mrkdwn(clean_text(v)) for k, v in _values(alert).items()}
    text = _FIELD_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    return cut(text, limit)


def slack_body(policy: SlackPolicy, alert: AlertView) -> dict[str, Any]:
    """The Slack incoming-webhook body: channel, fallback text, one section block."""
    text = render_text(template_for(policy, alert.code), alert, policy.delivery.max_text_chars)
    channel = policy.channels[alert.severity]  # type: ignore[index]
    return {
        "channel": channel,
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def pagerduty_event(
    policy: SlackPolicy, alert: AlertView, dedup: str, routing_key: str
) -> dict[str, Any]:
    """The PagerDuty Events v2 ``trigger`` event (the routing key is the caller's secret)."""
    summary = cut(clean_text(f"[{alert.code}] {alert.message}"), PD_SUMMARY_CHARS)
    details: Any = alert.details
    raw = json.dumps(details, default=str, ensure_ascii=False)
    if len(raw) > PD_DETAILS_CHARS:
        details = {"truncated": cut(raw, PD_DETAILS_CHARS)}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": summary,
            "source": policy.pagerduty.source,
            "severity": _PD_SEVERITY[alert.severity],
            "timestamp": alert.raised_at.isoformat(),
            "component": alert.source,
            "custom_details": {
                "code": alert.code,
                "alert_id": alert.alert_id,
                "run_id": alert.run_id,
                "scope": alert.scope,
                "message": cut(clean_text(alert.message), 4000),
                "details": details,
            },
        },
    }
