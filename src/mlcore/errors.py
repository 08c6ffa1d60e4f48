"""Errors named ``{DOMAIN}_{CATEGORY}_{CODE}``, grouped by how the caller reacts.

- :class:`FatalError`: needs a person (bad config, bad file, refused request).
- :class:`RetryableError`: transient (network, rate limit, server error); retry with backoff.
- :class:`DataQualityError`: the data are wrong; quarantine or reject and go on.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

_CODE_RE = re.compile(r"^[A-Z][A-Z0-9]*_[A-Z][A-Z0-9]*_[A-Z][A-Z0-9_]*$")


class Severity(StrEnum):
    """How bad an event is, for routing notifications."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class MlcoreError(Exception):
    """Base error: a code, a severity, a message and a structured payload."""

    default_severity = Severity.ERROR

    def __init__(
        self,
        code: str,
        message: str,
        *,
        severity: Severity | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if not _CODE_RE.match(code):
            raise ValueError(f"error code {code!r} does not follow DOMAIN_CATEGORY_CODE")
        super().__init__(message)
        self.code = code
        self.message = message
        self.severity = severity or self.default_severity
        self.details: dict[str, Any] = dict(details or {})
        self.event_id = uuid.uuid4().hex
        self.occurred_at = datetime.now(UTC)

    def payload(self) -> dict[str, Any]:
        """Return the structured payload the spec requires for every error event."""
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at.isoformat(),
            "details": self.details,
        }

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class FatalError(MlcoreError):
    """An error a person must fix; retrying will not help."""

    default_severity = Severity.CRITICAL


class ConfigError(FatalError):
    """A policy file or ENV variable is missing, malformed or out of range."""


class RetryableError(MlcoreError):
    """A transient failure; the operation may succeed when retried."""

    default_severity = Severity.WARNING

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after_s: float | None = None,
        severity: Severity | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, severity=severity, details=details)
        self.retry_after_s = retry_after_s


class DataQualityError(MlcoreError):
    """Input data break a quality rule; quarantine or reject them and go on."""

    default_severity = Severity.WARNING
