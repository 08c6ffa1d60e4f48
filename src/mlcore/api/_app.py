"""The app factory: every route under ``/api/v1``, one error body, the request limits."""

from __future__ import annotations

import yaml
from fastapi import FastAPI

from mlcore import __version__
from mlcore.api import (
    _routes_audit,
    _routes_configs,
    _routes_ops,
    _routes_resume,
    _routes_rollback,
)
from mlcore.api._errors import install_error_handlers
from mlcore.api._guard import BODY_TIMEOUT_S, MAX_BODY_BYTES, ApiContext, RequestLimits
from mlcore.api._users import Users
from mlcore.config import AppConfig
from mlcore.registry import Registry, registry_for
from mlcore.serving import flag_store

PREFIX = "/api/v1"


def create_app(
    cfg: AppConfig,
    *,
    registry: Registry | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> FastAPI:
    """The Ops API over ``cfg``'s registry (or ``registry``) and flags store."""
    reg = registry if registry is not None else registry_for(cfg)
    app = _build(max_body_bytes, body_timeout_s)
    app.state.ctx = ApiContext(
        cfg=cfg, registry=reg, users=Users(reg.engine), flags=flag_store(cfg)
    )
    return app


def openapi_yaml() -> str:
    """The OpenAPI document of the routes, as YAML (``mlcore api openapi``; openapi.yaml)."""
    doc = _build(MAX_BODY_BYTES).openapi()
    return yaml.safe_dump(doc, sort_keys=True, allow_unicode=True, width=100)


def _build(max_body_bytes: int, body_timeout_s: float = BODY_TIMEOUT_S) -> FastAPI:
    app = FastAPI(
        title="mlcore ops API",
        version=__version__,
        description="Halt, flatten, resume (two-person, canary first), roll back, governed "
        "configs and the audit trail. Every refusal is {code, message, field}.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        # No 307 to the slash-less path: its Location echoed the Host header (an open
        # redirect behind a proxy) and a refusal is always the one error body.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.include_router(_routes_ops.router, prefix=PREFIX)
    app.include_router(_routes_resume.router, prefix=PREFIX)
    app.include_router(_routes_rollback.router, prefix=PREFIX)
    app.include_router(_routes_configs.router, prefix=PREFIX)
    app.include_router(_routes_audit.router, prefix=PREFIX)
    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)
    return app
