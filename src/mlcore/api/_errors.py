"""The API's errors: every 4xx (and 5xx) body is ``{"code", "message", "field"}``, naming the
field at fault (``null`` when none is) and the problem; never a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mlcore.errors import FatalError, shown

# Starlette's own refusals (no route, wrong method ...) under our codes.
_STATUS_CODES = {
    400: "API_REQUEST_MALFORMED",
    404: "API_ROUTE_NOT_FOUND",
    408: "API_REQUEST_TIMEOUT",
    405: "API_METHOD_NOT_ALLOWED",
    413: "API_REQUEST_TOO_LARGE",
    415: "API_REQUEST_CONTENT_TYPE",
}


class ApiError(FatalError):
    """A refused request: HTTP ``status``, a ``{DOMAIN}_{CATEGORY}_{CODE}`` and the field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(code, message)
        self.status = status
        self.field = field

    def body(self) -> dict[str, Any]:
        """The response body."""
        return {"code": self.code, "message": self.message, "field": self.field}


class BodyTooLarge(HTTPException):
    """A request body over the limit, found while reading it (no Content-Length given)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyTimeout(HTTPException):
    """A request body still arriving at its deadline (a slow client holding a connection)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON response of ``error`` (401: with ``WWW-Authenticate``; 405: ``Allow`` kept)."""
    out = dict(headers or {})
    if error.status == 401:
        out["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error.body(), status_code=error.status, headers=out or None)


def _where(loc: tuple[Any, ...]) -> str:
    """``("body", "pairs", 0)`` as ``body.pairs[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out[:120]


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem of a failed validation, naming its field."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid", "type": "invalid"}
    field = _where(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        return ApiError(400, "API_REQUEST_MALFORMED", "the body is not valid JSON", "body")
    message = str(first.get("msg", "invalid"))
    if "input" in first and first.get("type") not in ("missing", "extra_forbidden"):
        message += f" (got {shown(first['input'])})"
    more = f"; {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return ApiError(422, "API_REQUEST_INVALID", f"{field}: {message}{more}", field)


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal (ours, FastAPI's validation, Starlette's) and every unexpected error as
    the one body shape."""

    async def _api(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(
            exc
            if isinstance(exc, ApiError)
            else ApiError(500, "API_SERVER_ERROR", "internal error")
        )

    async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RequestValidationError):
            return await _unexpected(_request, exc)
        return error_response(validation_error(exc))

    async def _http(_request: Request, exc: Exception) -> JSONResponse:
        status = int(getattr(exc, "status_code", 500))
        code = _STATUS_CODES.get(status, f"API_HTTP_{status}")
        field = "body" if status in (400, 408, 413, 415) else None
        message = str(getattr(exc, "detail", "") or code)
        return error_response(ApiError(status, code, message, field), getattr(exc, "headers", None))

    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Never a traceback in a body; the server's log has it.
        return error_response(ApiError(
            500, "API_SERVER_ERROR", f"internal error ({type(exc).__name__}); see the server log"
        ))  # fmt: skip

    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(RequestValidationError, _invalid)
    # Keyed by status: Starlette's own HTTPException (no route, wrong method) and FastAPI's.
    for status in (*_STATUS_CODES, 401, 403, 406, 409, 422, 429, 503):
        app.add_exception_handler(status, _http)
    app.add_exception_handler(Exception, _unexpected)
