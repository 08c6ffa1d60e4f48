"""deploy/prometheus/rules.yml: valid (`promtool check rules`), every alert fires and stays
quiet where it should (`promtool test rules`), the spec's PromQL example is there verbatim, and
the thresholds are the policy files' values."""

from __future__ import annotations

import subprocess

import yaml

from mlcore.config import AppConfig
from tests.prometheus_tools import RULES, RULES_TEST, tool

SPEC_EXAMPLE = "abs( model_action_mean - scalar(avg_over_time(model_action_mean[7d])) ) > 0.2"


def _rules() -> dict[str, dict[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return {r.get("alert") or r["record"]: r for g in doc["groups"] for r in g["rules"]}


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    out = subprocess.run([tool("promtool"), "test", "rules", str(RULES_TEST)],
                         capture_output=True, text=True, timeout=60, check=False,
                         cwd=RULES.parent)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {t["alertname"] for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for t in case.get("alert_rule_test", [])}  # fmt: skip
    alerts = {name for name, r in _rules().items() if "alert" in r}
    assert tested == alerts  # no alert left untested


def test_the_spec_example_and_the_named_rules_are_there() -> None:
    rules = _rules()
    assert rules["ModelActionMeanDrift"]["expr"] == SPEC_EXAMPLE
    assert "inference_latency_ms" in rules  # the spec's name, recorded from the seconds histogram
    named = (
        "InferenceLatencySLO",
        "ServingDataStale",
        "DataPipelineWatermarkLag",
        "DataQualityFailures",
        "DetectorAlarm",
        "RetrainFailed",
        "InferenceHeldForDataLag",
    )
    for name in named:
        assert rules[name]["labels"]["severity"] in ("warning", "critical")


def test_thresholds_are_the_policy_values(cfg: AppConfig) -> None:
    rules = _rules()
    slo = cfg.analytics.kpi.inference_slo_seconds  # the spec's 200 ms, also the live KPIs'
    assert rules["InferenceLatencySLO"]["expr"].endswith(f"> {slo:g}")
    budget = cfg.serving.freshness_budget_seconds
    assert rules["ServingDataStale"]["expr"].endswith(f"> {budget:g}")
    pipeline = cfg.pipeline.freshness_budget_seconds
    expr = rules["DataPipelineWatermarkLag"]["expr"]
    assert expr.endswith(f"- 3600 > {pipeline:g}") and cfg.serving.timeframe == "1h"
