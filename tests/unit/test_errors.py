"""Error naming and payloads."""

from __future__ import annotations

import pytest

from mlcore.errors import (
    DataQualityError,
    FatalError,
    MlcoreError,
    RetryableError,
    Severity,
)


@pytest.mark.parametrize(
    "code", ["DATA_API_TIMEOUT", "CORE_INFER_LATENCY", "BT_STRESS_FAIL", "CORE_RETRAIN_HEARTBEAT"]
)
def test_spec_codes_accepted(code: str) -> None:
    assert MlcoreError(code, "x").code == code


@pytest.mark.parametrize(
    "code", ["timeout", "DATA", "DATA_API", "data_api_timeout", "DATA-API-TIMEOUT"]
)
def test_codes_must_follow_domain_category_code(code: str) -> None:
    with pytest.raises(ValueError, match="DOMAIN_CATEGORY_CODE"):
        MlcoreError(code, "x")


def test_payload_has_required_fields() -> None:
    err = RetryableError(
        "DATA_API_RATE_LIMIT", "slow down", retry_after_s=3.0, details={"status": 429}
    )
    payload = err.payload()
    assert payload["code"] == "DATA_API_RATE_LIMIT"
    assert payload["severity"] == "warning"
    assert payload["details"] == {"status": 429}
    assert len(payload["event_id"]) == 32
    assert payload["occurred_at"].endswith("+00:00")
    assert err.retry_after_s == 3.0


def test_groups_have_default_severities() -> None:
    assert FatalError("DATA_FILE_SCHEMA", "x").severity is Severity.CRITICAL
    assert DataQualityError("DATA_DQ_GAP", "x").severity is Severity.WARNING
    assert str(FatalError("DATA_FILE_SCHEMA", "bad")) == "DATA_FILE_SCHEMA: bad"
