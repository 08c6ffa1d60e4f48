"""The Prefect server PREFECT_API_URL names, checked before any flow starts: a malformed URL
or an HTTP server that is not Prefect's API is a config error (exit 2), one that does not
answer a temporary failure (exit 75), each one line naming the URL."""

from __future__ import annotations

import httpx

from mlcore.errors import ConfigError, RetryableError

#: Seconds the server has to answer its health check.
HEALTH_TIMEOUT_S = 5.0


def _shown(url: str) -> str:
    """``url`` without any password."""
    try:
        parts = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(unparsable)"
    return str(parts.copy_with(password=None)) if parts.password else url


def _valid(url: str) -> httpx.URL:
    why = None
    try:
        parts = httpx.URL(url)
        if parts.scheme not in ("http", "https"):
            why = f"scheme must be http or https, got {parts.scheme or 'none'!r}"
        elif not parts.host:
            why = "it names no host"
        elif parts.port is not None and not 1 <= parts.port <= 65535:
            why = f"port {parts.port} is outside 1-65535"
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        why = str(exc) or type(exc).__name__
    if why is not None:
        raise ConfigError(
            "FLOWS_SERVER_URL_INVALID",
            f"PREFECT_API_URL {_shown(url)!s} is not a usable URL: {why} "
            "(e.g. http://127.0.0.1:4200/api)",
        )
    return parts


def check_prefect_server(url: str) -> None:
    """Refuse a malformed ``url`` or one that is not a Prefect API; RetryableError when it does
    not answer its health check within HEALTH_TIMEOUT_S."""
    parts = _valid(url)
    shown = _shown(url)
    health = parts.copy_with(path=parts.path.rstrip("/") + "/health")
    try:
        response = httpx.get(health, timeout=HEALTH_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise RetryableError(
            "FLOWS_SERVER_UNREACHABLE",
            f"the Prefect server at PREFECT_API_URL {shown} does not answer "
            f"({type(exc).__name__}); start it (`prefect server start`) or retry",
        ) from None
    if response.status_code >= 500:
        raise RetryableError(
            "FLOWS_SERVER_UNREACHABLE",
            f"the Prefect server at PREFECT_API_URL {shown} answered HTTP "
            f"{response.status_code} to its health check; retry",
        )
    try:
        healthy = response.status_code == 200 and response.json() is True
    except ValueError:
        healthy = False
    if not healthy:
        raise ConfigError(
            "FLOWS_SERVER_NOT_PREFECT",
            f"PREFECT_API_URL {shown} is not a Prefect API (its /health answered HTTP "
            f"{response.status_code}, not true); it should end in /api, e.g. "
            "http://127.0.0.1:4200/api",
        )
