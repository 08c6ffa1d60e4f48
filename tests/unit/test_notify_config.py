"""slack_policy.yaml and the notification secrets refused at start-up when they cannot work:
non-https URLs (http only to loopback), template fields that would read more than the alert's
values, a missing channel, a PagerDuty key that is not 32 characters. Secrets are never echoed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mlcore.config import SlackPolicy, load_config, read_env
from mlcore.config._schemas_feedback import delivery_url_problem
from mlcore.errors import ConfigError
from mlcore.governance import Risk
from mlcore.governance._risk import rate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BASE: dict[str, Any] = load_config(CONFIGS, "dev").slack.model_dump()


def policy_with(**changes: Any) -> SlackPolicy:
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = doc
        for p in parents:
            node = node[p]
        node[leaf] = value
    return SlackPolicy.model_validate(doc)


def test_shipped_policy_routes_every_severity() -> None:
    p = policy_with()
    assert p.channels["critical"] == "#risk-alerts" and p.channels["info"] == "#analytics-info"
    assert p.pagerduty.events_url == "https://events.pagerduty.com/v2/enqueue"


@pytest.mark.parametrize(
    "url",
    ["http://events.pagerduty.com/v2/enqueue", "ftp://x/y", "https://", "events.pagerduty.com",
     "https://host:99999/x", "http://10.0.0.1/x", "https://ho st/x", "javascript:alert(1)"],
)  # fmt: skip
def test_bad_events_urls_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="URL"):
        policy_with(pagerduty__events_url=url)


GOOD_URLS = ["http://127.0.0.1:8080/pd", "http://localhost/pd", "http://[::1]:9/pd",
             "https://events.eu.pagerduty.com/v2/enqueue"]  # fmt: skip


@pytest.mark.parametrize("url", GOOD_URLS)
def test_loopback_http_and_https_accepted(url: str) -> None:
    assert policy_with(pagerduty__events_url=url).pagerduty.events_url == url


@pytest.mark.parametrize(
    ("template", "why"),
    [("{message.__class__}", "not one of"), ("{0}", "not one of"), ("{message!r}", "conversions"),
     ("{message:>99999}", "format specs"), ("{secret}", "not one of"), ("{message", "template")],
)  # fmt: skip
def test_templates_read_only_the_alert_fields(template: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        policy_with(templates={"default": template})


def test_templates_need_a_default_and_code_families() -> None:
    with pytest.raises(ValidationError, match="default"):
        policy_with(templates={"CORE_X": "{message}"})
    with pytest.raises(ValidationError, match="code prefixes"):
        policy_with(templates={"default": "{message}", "lower case": "{message}"})


def test_channels_cover_every_severity_and_are_channel_names() -> None:
    with pytest.raises(ValidationError, match="no channel for severity"):
        policy_with(channels={"critical": "#a", "error": "#b", "warning": "#c"})
    with pytest.raises(ValidationError, match="not a Slack channel"):
        policy_with(channels={**BASE["channels"], "info": "analytics info"})


def test_delivery_numbers_checked() -> None:
    with pytest.raises(ValidationError, match="below"):
        policy_with(delivery__backoff_max_seconds=1.0)
    with pytest.raises(ValidationError, match="lease_seconds"):
        policy_with(delivery__lease_seconds=5.0)
    with pytest.raises(ValidationError):
        policy_with(delivery__max_text_chars=40_000)
    with pytest.raises(ValidationError):
        policy_with(delivery__retries=3)  # unknown key


SECRET = "hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"  # noqa: S105 - a made-up one


@pytest.mark.parametrize(
    ("env", "fragment"),
    [({"SLACK_WEBHOOK_URL": f"http://{SECRET}"}, "SLACK_WEBHOOK_URL must be https://"),
     ({"SLACK_WEBHOOK_URL": SECRET}, "SLACK_WEBHOOK_URL must be an https:// URL"),
     ({"SLACK_WEBHOOK_URL": "https://hooks.slack.com:x/SECRET"}, "is not a usable URL"),
     ({"PAGERDUTY_INTEGRATION_KEY": "SECRETKEY" * 3}, "must be 32 letters and digits (got 27"),
     ({"PAGERDUTY_INTEGRATION_KEY": "SECRET-KEY" + "a" * 22}, "must be 32 letters and digits")],
)  # fmt: skip
def test_bad_secrets_refused_without_echo(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        read_env(env)
    assert exc.value.code == "CONFIG_ENV_INVALID"
    assert fragment in exc.value.message
    assert "SECRET" not in exc.value.message


def test_good_secrets_accepted() -> None:
    env = read_env({"SLACK_WEBHOOK_URL": f"https://{SECRET}",
                    "PAGERDUTY_INTEGRATION_KEY": "a1" * 16})  # fmt: skip
    assert env.pagerduty_integration_key == "a1" * 16
    assert read_env({"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/x"}).slack_webhook_url


@given(st.text(max_size=200))
def test_url_check_never_raises(url: str) -> None:
    problem = delivery_url_problem(url)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        assert url.startswith(("https://", "http://"))


def test_rerouting_the_pager_is_a_high_risk_change() -> None:
    assert rate("slack_policy.yaml", ["pagerduty"]) == Risk.HIGH
    assert rate("slack_policy.yaml", ["channels"]) == Risk.HIGH
    assert rate("slack_policy.yaml", ["templates", "delivery"]) == Risk.MEDIUM
