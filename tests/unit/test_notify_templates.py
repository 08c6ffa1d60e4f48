"""Notification bodies from hostile alert text: Slack escaping (checked against
``html.escape``), no template injection, Slack's length limit, control characters and bytes
that were not UTF-8; PagerDuty's event shape; the retry arithmetic."""

from __future__ import annotations

import functools
import html
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcore.config import SlackPolicy, load_config
from mlcore.observability import (
    AlertView,
    backoff_seconds,
    clean_text,
    cut,
    escape_mrkdwn,
    pagerduty_event,
    render_text,
    retry_after_seconds,
    slack_body,
    template_for,
)
from mlcore.observability._notify import judge
from mlcore.registry import alert_scope, dedup_key

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@functools.cache
def _slack() -> SlackPolicy:
    # Loaded once: a hypothesis example per config load made two tests take a minute each.
    return load_config(CONFIGS, "dev").slack


@pytest.fixture(scope="module")
def policy() -> SlackPolicy:
    return _slack()


def view(message: str, code: str = "CORE_X", severity: str = "error", **kw: object) -> AlertView:
    base: dict[str, object] = {
        "alert_id": "a1", "code": code, "severity": severity, "source": "serving",
        "message": message, "run_id": None, "raised_at": T0, "details": None, "scope": "global",
    }  # fmt: skip
    base.update(kw)
    return AlertView(**base)  # type: ignore[arg-type]


@given(st.text())
def test_escape_matches_html_escape_without_quotes(text: str) -> None:
    assert escape_mrkdwn(text) == html.escape(text, quote=False)


@given(st.text(), st.integers(min_value=2, max_value=300))
def test_cut_is_bounded_and_never_splits_an_escape(text: str, limit: int) -> None:
    escaped = escape_mrkdwn(text)
    out = cut(escaped, limit)
    assert len(out) <= limit
    if len(escaped) <= limit:
        assert out == escaped
    else:
        body = out.removesuffix("…")
        assert escaped.startswith(body)
        # an & in the kept text always starts a whole escape
        for i, c in enumerate(body):
            if c == "&":
                assert any(body.startswith(e, i) for e in ("&amp;", "&lt;", "&gt;"))


def test_mentions_and_links_become_text(policy: SlackPolicy) -> None:
    hostile = "<!channel> <@U123|boss> <https://evil.example|click> & <!here>"
    body = slack_body(policy, view(hostile))
    assert "<" not in body["text"] and ">" not in body["text"].replace("&gt;", "")
    assert "&lt;!channel&gt;" in body["text"] and "&amp;" in body["text"]
    assert body["blocks"][0]["text"] == {"type": "mrkdwn", "text": body["text"]}


@given(st.text(alphabet=st.sampled_from("{}abcdemosgrt_ 0123!:.[]"), max_size=80))
def test_alert_text_is_never_read_as_template(message: str) -> None:
    template = "*{code}* {message} ({severity})"
    out = render_text(template, view(message), 3000)
    assert out == f"*CORE_X* {escape_mrkdwn(clean_text(message))} (error)"


def test_format_string_attacks_stay_literal() -> None:
    out = render_text("{message}", view("{code.__class__} {0} %s {message}"), 3000)
    assert out == "{code.__class__} {0} %s {message}"


def test_huge_text_is_cut_to_the_limit(policy: SlackPolicy) -> None:
    body = slack_body(policy, view("&" * 100_000))
    limit = policy.delivery.max_text_chars
    assert limit - 5 <= len(body["text"]) <= limit <= 3000
    assert body["text"].endswith("&amp;…")  # cut before a split escape
    event = pagerduty_event(policy, view("x" * 100_000, details={"k": "v" * 100_000}), "d", "k")
    assert len(event["payload"]["summary"]) <= 1024
    assert len(json.dumps(event)) < 30_000


def test_control_characters_and_undecodable_bytes() -> None:
    raw = b"ok\xff\xfe bell\x07 esc\x1b[31m rtl\xe2\x80\xae nul\x00 tab\tline\n".decode(
        "utf-8", "surrogateescape"
    )
    out = clean_text(raw)
    assert out == "ok\ufffd\ufffd bell esc[31m rtl nul tab\tline\n"
    json.dumps(out).encode("utf-8")  # sendable
    assert slack_body(_slack(), view(raw))["text"].encode("utf-8")


def test_templates_by_code_family(policy: SlackPolicy) -> None:
    assert template_for(policy, "CORE_RETRAIN_STOPPED") == policy.templates["CORE_RETRAIN"]
    assert template_for(policy, "CORE_DD_FLATTEN") == policy.templates["CORE_DD"]
    assert template_for(policy, "SOMETHING_ELSE_X") == policy.templates["default"]


def test_channels_by_severity(policy: SlackPolicy) -> None:
    got = {s: slack_body(policy, view("m", severity=s))["channel"] for s in policy.channels}
    assert got == {"critical": "#risk-alerts", "error": "#ml-ops", "warning": "#ml-ops",
                   "info": "#analytics-info"}  # fmt: skip


def test_pagerduty_event_shape(policy: SlackPolicy) -> None:
    e = pagerduty_event(
        policy, view("down", severity="critical", run_id="r9"), "K/run:r9", "x" * 32
    )
    assert e["routing_key"] == "x" * 32 and e["event_action"] == "trigger"
    assert e["dedup_key"] == "K/run:r9"
    p = e["payload"]
    assert (p["severity"], p["source"], p["timestamp"]) == (
        "critical",
        "ml-assets-core",
        T0.isoformat(),
    )
    assert p["summary"] == "[CORE_X] down" and p["custom_details"]["run_id"] == "r9"


def test_dedup_key_and_scope() -> None:
    assert alert_scope("r1", {"pair_id": "EUR_USD"}) == "run:r1"
    assert alert_scope(None, {"pair_id": "EUR_USD"}) == "pair_id:EUR_USD"
    assert alert_scope(None, {"pair_id": True, "worker": "w0"}) == "worker:w0"
    assert alert_scope(None, None) == "global"
    long = dedup_key("C" * 100, "pair_id:" + "P" * 200)
    assert len(long) == 128 and long != dedup_key("C" * 100, "pair_id:" + "P" * 199 + "Q")


@given(st.integers(min_value=1, max_value=10_000))
def test_backoff_is_capped_and_grows(attempts: int) -> None:
    policy = _slack()
    d = policy.delivery
    wait = backoff_seconds(attempts, policy)
    assert d.backoff_base_seconds <= wait <= d.backoff_max_seconds
    assert backoff_seconds(attempts + 1, policy) >= wait
    expected = min(
        d.backoff_max_seconds, d.backoff_base_seconds * d.backoff_factor ** min(attempts - 1, 64)
    )
    assert wait == pytest.approx(expected)


def test_retry_after_forms() -> None:
    assert retry_after_seconds("120", T0) == 120
    later = (T0 + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(later, T0) == pytest.approx(30)
    for junk in (None, "", "soon", "-5", "1e9", "Fri, 99 Foo"):
        assert retry_after_seconds(junk, T0) is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (202, "delivered"), (204, "delivered"), (400, "failed"),
     (403, "failed"), (404, "failed"), (410, "failed"), (301, "failed"), (429, "retry"),
     (500, "retry"), (502, "retry"), (503, "retry")],
)  # fmt: skip
def test_verdicts(status: int, outcome: str) -> None:
    response = httpx.Response(status, text="no_service", headers={"Retry-After": "7"})
    verdict = judge(response, T0)
    assert verdict.outcome == outcome
    if outcome != "delivered":
        assert verdict.reason.startswith(f"HTTP {status}")
    assert verdict.wait_s == (7 if status == 429 else None)


@given(st.text(), st.sampled_from(["critical", "error", "warning", "info"]))
def test_any_alert_text_makes_a_safe_bounded_body(message: str, severity: str) -> None:
    policy = _slack()
    body = slack_body(policy, view(message, code="CORE_RETRAIN_X", severity=severity))
    text = body["text"]
    assert len(text) <= policy.delivery.max_text_chars
    assert "<" not in text and ">" not in text
    assert all(c in "\n\t" or c.isprintable() or c == "\ufffd" or not c.isascii() for c in text)
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # never raises: sendable


@given(st.text(max_size=60))
def test_retry_after_never_raises(value: str) -> None:
    got = retry_after_seconds(value, T0)
    assert got is None or got >= 0
