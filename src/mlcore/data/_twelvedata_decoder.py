"""One TwelveData ``time_series`` response, decoded: a page of values, or the error that says
how the caller reacts (retry, a person fixes the key, a person fixes the request)."""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import httpx

from mlcore.errors import BadDataError, FatalError, RefusedError, RetryableError

_NO_DATA_TEXT = "no data is available"
_MESSAGE_CHARS = 300
# A refused key and a forbidden request need a person (exit 69); their codes, as HTTP statuses
# and as the ``code`` of TwelveData's error body (which it may send with HTTP 200).
_AUTH_REFUSALS = {401: "DATA_API_UNAUTHORIZED", 403: "DATA_API_FORBIDDEN"}
# 408 Request Timeout and 425 Too Early are the server's own "try again" among the 4xx.
_TRANSIENT_4XX = frozenset({408, 425})


#: The most a response may hold once decoded: a full page (5,000 bars) is under 1 MiB.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def read_bounded(streamed: httpx.Response, deadline: float, provider: str) -> httpx.Response:
    """Read a streamed answer decoded (gzip, deflate...) chunk by chunk up to
    :data:`MAX_RESPONSE_BYTES`, and return it as a read response. Over the bound:
    ``DATA_API_TOO_LARGE`` (exit 65), nothing more read; past ``deadline`` (monotonic):
    ``httpx.ReadTimeout``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in streamed.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise BadDataError(
                "DATA_API_TOO_LARGE",
                f"{provider}: HTTP {streamed.status_code} answer over "
                f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB once decoded: not read further",
                details={"provider": provider, "http_status": streamed.status_code},
            )
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the whole request took too long")
    # Already decoded: the rebuilt response must not decode it again.
    headers = [
        (k, v)
        for k, v in streamed.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        streamed.status_code, headers=headers, content=b"".join(chunks), request=streamed.request
    )


def _retry_after_s(header: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not header:
        return None
    text = header.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def redact(text: str, secret: str) -> str:
    """``text`` without ``secret`` (also URL-quoted), cut to a message's length."""
    if secret:
        # Also as a URL would carry it (a server may quote a query string back).
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, "***")
    return text[:_MESSAGE_CHARS]


class Decoder:
    """Turn one HTTP response into a page of values or the matching error, for the request
    ``what`` of ``provider`` made with the key from variable ``key_env``."""

    def __init__(self, provider: str, what: str, api_key: str, key_env: str) -> None:
        self.provider = provider
        self.what = what
        self.api_key = api_key
        self.key_env = key_env

    def _details(self, http_status: int, **extra: Any) -> dict[str, Any]:
        return {"provider": self.provider, "http_status": http_status, **extra}

    def values(self, response: httpx.Response) -> list[dict[str, Any]]:
        """The page's values; raises the error the response stands for."""
        status = response.status_code
        if status == 429:
            raise self._rate_limited(status, _retry_after_s(response.headers.get("Retry-After")))
        if status >= 500:
            raise self._server_error(status, status)
        if status in _TRANSIENT_4XX:
            raise RetryableError(
                "DATA_API_TIMEOUT" if status == 408 else "DATA_API_SERVER_ERROR",
                f"{self.what}: HTTP {status} {response.reason_phrase}: the server asks to try "
                "again later",
                details=self._details(status),
            )
        body = self._json(response)
        if isinstance(body, dict) and body.get("status") == "error":
            return self._from_error_body(body, status, response)
        reason = f"HTTP {status} {response.reason_phrase}".rstrip()
        if status in _AUTH_REFUSALS:
            raise self._auth_refused(status, status, reason)
        if not 200 <= status < 300:
            raise self._refused(status, reason)
        if body is None:
            raise RetryableError(
                "DATA_API_BAD_RESPONSE",
                f"{self.what}: HTTP {status} body is not complete JSON",
                details=self._details(status),
            )
        return self._page(body, status)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
            return None

    def _from_error_body(
        self, body: dict[str, Any], status: int, response: httpx.Response
    ) -> list[dict[str, Any]]:
        code = body.get("code")
        message = redact(str(body.get("message", "")), self.api_key)
        if code == 429:
            raise self._rate_limited(status, _retry_after_s(response.headers.get("Retry-After")))
        if isinstance(code, int) and code >= 500:
            raise self._server_error(status, code, message)
        if code == 400 and _NO_DATA_TEXT in message.lower():
            return []
        reason = f"HTTP {status}, API error {code}: {message}".rstrip(": ")
        if code in _AUTH_REFUSALS or status in _AUTH_REFUSALS:
            raise self._auth_refused(status, code if code in _AUTH_REFUSALS else status, reason)
        raise self._refused(status, reason, api_code=code)

    def _page(self, body: Any, status: int) -> list[dict[str, Any]]:
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
            keys = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise FatalError(
                "DATA_API_SCHEMA",
                f"{self.what}: response has no list of value objects under 'values' (got {keys})",
                details=self._details(status),
            )
        return values

    def _rate_limited(self, status: int, retry_after_s: float | None) -> RetryableError:
        hint = f"; retry after {retry_after_s:g} s" if retry_after_s is not None else ""
        return RetryableError(
            "DATA_API_RATE_LIMIT",
            f"{self.what}: rate limited (HTTP {status}){hint}",
            retry_after_s=retry_after_s,
            details=self._details(status),
        )

    def _server_error(self, status: int, code: int, message: str = "") -> RetryableError:
        text = f": {message}" if message else ""
        return RetryableError(
            "DATA_API_SERVER_ERROR",
            f"{self.what}: server error {code} (HTTP {status}){text}",
            details=self._details(status, api_code=code),
        )

    def _auth_refused(self, status: int, code: int, reason: str) -> RefusedError:
        what = (
            f"the API key in {self.key_env} was refused"
            if code == 401
            else f"the API key in {self.key_env} may not make this request (plan or permission)"
        )
        return RefusedError(
            _AUTH_REFUSALS[code],
            f"{self.what}: {what} ({reason})",
            details=self._details(status, api_code=code),
        )

    def _refused(self, status: int, reason: str, api_code: Any = None) -> FatalError:
        return FatalError(
            "DATA_API_REFUSED",
            f"{self.what}: request refused: {reason}",
            details=self._details(status, api_code=api_code),
        )


__all__ = ["Decoder", "redact"]
