"""Who may call what: each route declares its access (a minimum role, the duties allowed, TOTP
for approver-level routes) in ``openapi_extra["x-access"]``; :class:`GuardedRoute` checks it
before the body is read, and audits every refusal as ``api.denied``."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from mlcore.api._audit import record
from mlcore.api._errors import ApiError, BodyTimeout, BodyTooLarge
from mlcore.api._users import Duty, Role, User, Users
from mlcore.config import AppConfig
from mlcore.registry import Registry
from mlcore.serving import FlagStore

log = logging.getLogger("mlcore.api")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_BODY_BYTES = 65_536
#: Seconds a request's whole body may take to arrive (a slow-body client holds no slot longer).
BODY_TIMEOUT_S = 10.0

# ASGI's types (as Starlette spells them).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ApiContext:
    """What the handlers use: the config, the registry (audit, users) and the flag store."""

    cfg: AppConfig
    registry: Registry
    users: Users
    flags: FlagStore


def access(role: Role | None, duties: set[Duty] | None = None) -> dict[str, Any]:
    """The ``openapi_extra`` of a route: ``role`` None for no authentication; ``duties`` the
    duties allowed below admin (None: any)."""
    spec: dict[str, Any] = {"role": "none" if role is None else role.value,
                            "totp": role is not None and role.needs_totp}  # fmt: skip
    if duties is not None:
        spec["duties"] = sorted(d.value for d in duties)
    return {"x-access": spec}


def context(request: Request) -> ApiContext:
    """The app's context."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


def request_id(request: Request) -> str:
    """This request's id (X-Request-ID, or one generated)."""
    return str(request.state.request_id)


def principal(request: Request) -> User:
    """The authenticated caller."""
    user: User = request.state.principal
    return user


def _deny(ctx: ApiContext, request: Request, user: User | None, error: ApiError) -> ApiError:
    try:
        record(ctx.registry, "api.denied", actor=user.name if user else "anonymous",
               role=user.role.value if user else "none", reason=error.message,
               request_id=request_id(request), result="denied",
               details={"code": error.code, "method": request.method,
                        "path": request.url.path})  # fmt: skip
    except Exception:  # the refusal stands; a person must see the audit failure
        log.exception("api.denied not recorded (%s %s)", error.code, request.url.path)
    return error


def _bearer(header: str | None) -> tuple[str | None, ApiError | None]:
    if not header:
        return None, ApiError(
            401,
            "API_AUTH_TOKEN_MISSING",
            "no token: send 'Authorization: Bearer <token>'",
            "Authorization",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token):
        return None, ApiError(
            401,
            "API_AUTH_TOKEN_MALFORMED",
            "Authorization is not 'Bearer <token>'",
            "Authorization",
        )
    return token, None


def authorize(ctx: ApiContext, request: Request, spec: dict[str, Any]) -> User:
    """The caller, if the route's access lets them in; else the refusal (audited)."""
    token, error = _bearer(request.headers.get("authorization"))
    if token is None:
        raise _deny(
            ctx, request, None, error or ApiError(401, "API_AUTH_TOKEN_MISSING", "no token")
        )
    user, revoked = ctx.users.by_token(token)
    if user is None:
        raise _deny(ctx, request, None, ApiError(
            401, "API_AUTH_TOKEN_INVALID", "the token is not known", "Authorization"))  # fmt: skip
    if revoked:
        raise _deny(ctx, request, user, ApiError(
            401, "API_AUTH_TOKEN_REVOKED", "the token is revoked", "Authorization"))  # fmt: skip
    need = Role(spec["role"])
    if user.role.rank < need.rank:
        raise _deny(ctx, request, user, ApiError(
            403, "API_AUTH_ROLE_DENIED",
            f"{request.method} {request.url.path} needs role {need} or above; {user.name} is "
            f"{user.role}", None))  # fmt: skip
    duties = spec.get("duties")
    if duties is not None and user.role is not Role.ADMIN and user.duty.value not in duties:
        raise _deny(ctx, request, user, ApiError(
            403, "API_AUTH_DUTY_DENIED",
            f"{request.method} {request.url.path} needs duty {' or '.join(duties)}; "
            f"{user.name} has duty {user.duty}", None))  # fmt: skip
    if spec["totp"]:
        _check_totp(ctx, request, user)
    return user


def _check_totp(ctx: ApiContext, request: Request, user: User) -> None:
    code = request.headers.get("x-totp")
    if not code:
        raise _deny(
            ctx,
            request,
            user,
            ApiError(
                401, "API_AUTH_TOTP_MISSING", "this action needs a TOTP code in X-TOTP", "X-TOTP"
            ),
        )
    why = ctx.users.use_totp(user.name, code)
    if why == "replayed":
        raise _deny(ctx, request, user, ApiError(
            401, "API_AUTH_TOTP_REPLAYED", "this TOTP code was used already; wait for the next",
            "X-TOTP"))  # fmt: skip
    if why is not None:
        raise _deny(
            ctx,
            request,
            user,
            ApiError(401, "API_AUTH_TOTP_INVALID", "the TOTP code is wrong or expired", "X-TOTP"),
        )


class GuardedRoute(APIRoute):
    """A route that checks its declared access, then the body's content type, before
    FastAPI reads and validates the body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        spec = (self.openapi_extra or {}).get("x-access")
        if spec is None:
            raise RuntimeError(f"route {self.path} declares no access (openapi_extra x-access)")
        has_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            if spec["role"] != "none":
                request.state.principal = await run_in_threadpool(
                    authorize, context(request), request, spec
                )
            if has_body:
                kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind != "application/json":
                    raise ApiError(415, "API_REQUEST_CONTENT_TYPE",
                                   f"the body must be application/json, got {kind[:60]!r}",
                                   "Content-Type")  # fmt: skip
            return await handler(request)

        return guarded


class RequestLimits:
    """ASGI middleware: the request id (X-Request-ID or a new one, echoed back) and the body
    limit (a Content-Length over it refused at once, a longer stream when read) and the body
    deadline (the whole body within ``body_timeout_s`` of the request's start, else 408)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id")
        if given is not None and not REQUEST_ID_RE.fullmatch(given):
            await self._refuse(scope, send, ApiError(
                400, "API_REQUEST_ID_INVALID",
                "X-Request-ID must be 1-64 characters of letters, digits, '.', '_', ':', '-'",
                "X-Request-ID"), None)  # fmt: skip
            return
        rid = given or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            await self._refuse(scope, send, ApiError(
                413 if length.isdigit() else 400,
                "API_REQUEST_TOO_LARGE" if length.isdigit() else "API_REQUEST_MALFORMED",
                f"request body over {self.max_body_bytes} bytes" if length.isdigit()
                else "Content-Length is not a number", "body"), rid)  # fmt: skip
            return
        limited = self._limited(receive)

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]  # fmt: skip
            await send(message)

        await self.app(scope, limited, tagged)

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` with the body limit and the body deadline."""
        seen, complete = 0, False
        deadline = time.monotonic() + self.body_timeout_s

        async def limited() -> Message:
            nonlocal seen, complete
            if complete:  # the body is in: waiting for a disconnect is not bounded
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise BodyTimeout(self.body_timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
                complete = not message.get("more_body", False)
            else:  # http.disconnect: nothing more will come
                complete = True
            return message

        return limited

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: ApiError, rid: str | None) -> None:
        """Answer ``error`` before the app sees the request, audited as ``api.refused`` (no
        one is authenticated yet: actor anonymous)."""
        ctx: ApiContext | None = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
        if ctx is not None:
            try:
                await run_in_threadpool(
                    record, ctx.registry, "api.refused", actor="anonymous", role="none",
                    reason=error.message, request_id=rid or uuid.uuid4().hex, result="refused",
                    details={"code": error.code, "method": str(scope.get("method", ""))[:16],
                             "path": str(scope.get("path", ""))[:200]},
                )  # fmt: skip
            except Exception:  # the refusal stands; a person must see the audit failure
                log.exception("api.refused not recorded (%s)", error.code)
        body = json.dumps(error.body()).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        if rid:
            headers.append((b"x-request-id", rid.encode()))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
