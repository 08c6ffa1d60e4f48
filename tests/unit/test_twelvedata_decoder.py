"""Every answer a data API can give, decoded to the error that says how the caller reacts, and
the exit code the command line ends with: a refused key 69, any other refused request 1 with
its status named, only a transient failure 75; never 70 (a bug), never the key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mlcore.cli._app import exit_code
from mlcore.data._twelvedata_decoder import Decoder, redact
from mlcore.errors import FatalError, MlcoreError, RefusedError, RetryableError

KEY = "k3y/with+odd chars"
WHAT = "twelvedata BTC/USD 1h [2024-03-04 00:00:00 .. 2024-03-05 00:00:00]"


def _error(code: Any, message: str = "") -> dict[str, Any]:
    return {"status": "error", "code": code, "message": message}


def _decode(status: int, body: Any = None, raw: bytes | None = None) -> list[dict[str, Any]]:
    request = httpx.Request("GET", "https://api.example/time_series")
    if raw is not None:
        response = httpx.Response(status, content=raw, request=request)
    else:
        response = httpx.Response(status, json=body, request=request)
    return Decoder("twelvedata", WHAT, KEY, "TWELVEDATA_API_KEY").values(response)


@pytest.mark.parametrize(
    ("status", "body", "raw", "kind", "code", "exit", "named"),
    [
        (401, _error(401, "**apikey** is incorrect"), None, RefusedError,
         "DATA_API_UNAUTHORIZED", 69, "HTTP 401, API error 401: **apikey** is incorrect"),
        (200, _error(401, "**apikey** is incorrect"), None, RefusedError,
         "DATA_API_UNAUTHORIZED", 69, "HTTP 200, API error 401"),
        (401, None, b"Unauthorized", RefusedError, "DATA_API_UNAUTHORIZED", 69,
         "HTTP 401 Unauthorized"),
        (403, None, b"<html>Forbidden</html>", RefusedError, "DATA_API_FORBIDDEN", 69,
         "HTTP 403 Forbidden"),
        (200, _error(403, "upgrade your plan"), None, RefusedError, "DATA_API_FORBIDDEN", 69,
         "HTTP 200, API error 403: upgrade your plan"),
        (403, _error(400, "odd"), None, RefusedError, "DATA_API_FORBIDDEN", 69,
         "HTTP 403, API error 400: odd"),
        (400, _error(400, "**interval** is invalid"), None, FatalError, "DATA_API_REFUSED", 1,
         "HTTP 400, API error 400: **interval** is invalid"),
        (400, None, b"bad request", FatalError, "DATA_API_REFUSED", 1, "HTTP 400 Bad Request"),
        (404, None, b"", FatalError, "DATA_API_REFUSED", 1, "HTTP 404 Not Found"),
        (200, _error(404, "**symbol** not found"), None, FatalError, "DATA_API_REFUSED", 1,
         "HTTP 200, API error 404: **symbol** not found"),
        (422, None, b"{}", FatalError, "DATA_API_REFUSED", 1, "HTTP 422 Unprocessable"),
        (414, _error(414, "too long"), None, FatalError, "DATA_API_REFUSED", 1, "API error 414"),
        (301, None, b"", FatalError, "DATA_API_REFUSED", 1, "HTTP 301 Moved Permanently"),
        (429, None, b"", RetryableError, "DATA_API_RATE_LIMIT", 75, "rate limited (HTTP 429)"),
        (200, _error(429, "slow down"), None, RetryableError, "DATA_API_RATE_LIMIT", 75,
         "HTTP 200"),
        (500, None, b"", RetryableError, "DATA_API_SERVER_ERROR", 75, "server error 500"),
        (503, _error(503, "down"), None, RetryableError, "DATA_API_SERVER_ERROR", 75,
         "server error 503 (HTTP 503)"),
        (200, _error(500, "oops"), None, RetryableError, "DATA_API_SERVER_ERROR", 75,
         "server error 500 (HTTP 200): oops"),
        (408, None, b"", RetryableError, "DATA_API_TIMEOUT", 75, "HTTP 408 Request Timeout"),
        (425, None, b"", RetryableError, "DATA_API_SERVER_ERROR", 75, "HTTP 425 Too Early"),
        (200, None, b'{"values": [', RetryableError, "DATA_API_BAD_RESPONSE", 75,
         "not complete JSON"),
        (200, {"meta": {}}, None, FatalError, "DATA_API_SCHEMA", 1, "no list of value objects"),
    ],
)  # fmt: skip
def test_every_answer_maps_to_its_reaction_and_exit_code(
    status: int,
    body: Any,
    raw: bytes | None,
    kind: type[MlcoreError],
    code: str,
    exit: int,
    named: str,
) -> None:
    with pytest.raises(MlcoreError) as caught:
        _decode(status, body, raw)
    error = caught.value
    assert type(error) is kind
    assert (error.code, exit_code(error)) == (code, exit)
    assert error.message.startswith(f"{WHAT}: ")
    assert named in error.message
    assert error.details["provider"] == "twelvedata"
    assert error.details["http_status"] == status


def test_a_refusal_names_the_key_variable_and_what_to_do() -> None:
    with pytest.raises(RefusedError) as caught:
        _decode(401, _error(401, "bad key"))
    assert "the API key in TWELVEDATA_API_KEY was refused" in caught.value.message
    with pytest.raises(RefusedError) as caught:
        _decode(403, _error(403, "plan"))
    assert "may not make this request (plan or permission)" in caught.value.message


@pytest.mark.parametrize(
    "echo", [KEY, "k3y%2Fwith%2Bodd%20chars", "k3y%2Fwith%2Bodd+chars"], ids=["raw", "quoted",
                                                                            "quoted-plus"]
)  # fmt: skip
def test_the_key_is_never_echoed_whatever_its_quoting(echo: str) -> None:
    with pytest.raises(RefusedError) as caught:
        _decode(401, _error(401, f"apikey={echo} is not valid"))
    assert "apikey=*** is not valid" in caught.value.message
    assert KEY not in str(caught.value) and echo not in str(caught.value)


def test_no_data_is_an_empty_page_and_values_are_returned() -> None:
    assert _decode(400, _error(400, "No data is available on the specified dates.")) == []
    assert _decode(200, {"values": [{"datetime": "2024-03-04 00:00:00"}]}) == [
        {"datetime": "2024-03-04 00:00:00"}
    ]


def test_redact_cuts_long_messages() -> None:
    assert len(redact("x" * 1000, KEY)) == 300
    assert redact("nothing secret", "") == "nothing secret"
