"""ENV variables, validated per SERVICE_ENV (spec: 設定/ENV)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict

from mlcore.config._schemas_feedback import delivery_url_problem
from mlcore.errors import ConfigError

ServiceEnv = Literal["dev", "stg", "prod"]

# The spec's rule, not a policy value: which variables each environment must set.
_STG_REQUIRED = (
    "POSTGRES_URL",
    "REDIS_URL",
    "TWELVEDATA_API_KEY",
    "STORAGE_BACKEND",
    "ARCHIVE_PATH",
    "SLACK_WEBHOOK_URL",
)
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "dev": (),
    "stg": _STG_REQUIRED,
    "prod": (*_STG_REQUIRED, "PAGERDUTY_INTEGRATION_KEY"),
}

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class EnvSettings(BaseModel):
    """The ENV values ml-assets-core reads. Secrets are never logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_env: ServiceEnv
    log_level: str | None
    postgres_url: str | None
    redis_url: str | None
    twelvedata_api_key: str | None
    storage_backend: Literal["local", "s3"] | None
    archive_path: str | None
    slack_webhook_url: str | None
    pagerduty_integration_key: str | None


_SCHEMES = {"POSTGRES_URL": ("postgresql", "postgresql+psycopg", "postgres"),
            "REDIS_URL": ("redis", "rediss", "unix")}  # fmt: skip


_REDIS_DB_MAX = 2**31 - 1  # Redis's own limit on the ``databases`` setting


def _url_problems(var: str, url: str) -> list[str]:
    """What is wrong with a service URL, without echoing it (it may hold a password)."""
    schemes = _SCHEMES[var]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # its text can hold part of the password: not repeated
        return [f"{var} is not a usable URL: its port is not a number in 1-65535"]
    if parts.scheme not in schemes:
        return [f"{var} must be a {schemes[0]}:// URL, got scheme {parts.scheme!r}"]
    if port is not None and not 1 <= port <= 65535:
        return [f"{var} port {port} is outside 1-65535"]
    query = parse_qs(parts.query)
    if var == "POSTGRES_URL":
        return _postgres_problems(var, parts.hostname, parts.path, query)
    return _redis_problems(var, parts.scheme, parts.path, query)


def _postgres_problems(
    var: str, host: str | None, path: str, query: dict[str, list[str]]
) -> list[str]:
    # libpq fills a missing host or database from its defaults (a local socket, the OS
    # user's database): the registry would write somewhere nobody configured.
    if not host and not query.get("host"):
        return [f"{var} needs a host (postgresql://user@host:5432/database)"]
    if not path.strip("/") and not query.get("dbname"):
        return [f"{var} needs a database name (postgresql://user@host:5432/database)"]
    return []


def _redis_problems(var: str, scheme: str, path: str, query: dict[str, list[str]]) -> list[str]:
    if scheme == "unix":
        if not path:
            return [f"{var} needs the socket path (unix:///path/to/redis.sock?db=0)"]
        dbs = query.get("db", [])
    else:
        dbs = [*query.get("db", []), *([path[1:]] if path.strip("/") else [])]
    for db in dbs:
        if not (db.isascii() and db.isdigit() and int(db) <= _REDIS_DB_MAX):
            return [
                f"{var} database must be a whole number 0-{_REDIS_DB_MAX} (redis://host:6379/0)"
            ]
    return []


_PD_KEY_LEN = 32  # a PagerDuty Events v2 integration (routing) key


def _notify_problems(env: Mapping[str, str]) -> list[str]:
    """The notification secrets' format (never their values: they are secrets)."""
    problems = []
    webhook = env.get("SLACK_WEBHOOK_URL")
    if webhook and (why := delivery_url_problem(webhook)) is not None:
        problems.append(f"SLACK_WEBHOOK_URL {why}")
    key = env.get("PAGERDUTY_INTEGRATION_KEY")
    if key and not (len(key) == _PD_KEY_LEN and key.isascii() and key.isalnum()):
        problems.append(
            f"PAGERDUTY_INTEGRATION_KEY must be {_PD_KEY_LEN} letters and digits "
            f"(got {len(key)} characters)"
        )
    return problems


def sqlalchemy_postgres_url(url: str) -> str:
    """``url`` with SQLAlchemy's psycopg 3 driver named (``postgresql://`` as users write it)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def read_env(
    environ: Mapping[str, str] | None = None, *, service_env: str | None = None
) -> EnvSettings:
    """Read and validate ENV for ``service_env`` (default: ``SERVICE_ENV``, or ``dev`` when unset).

    Raises ConfigError naming every missing or invalid variable at once.
    """
    env = os.environ if environ is None else environ
    name = service_env or env.get("SERVICE_ENV") or "dev"
    problems: list[str] = []
    if name not in REQUIRED_ENV:
        raise ConfigError(
            "CONFIG_ENV_INVALID",
            f"SERVICE_ENV={name!r} is not one of {sorted(REQUIRED_ENV)}",
            details={"variable": "SERVICE_ENV"},
        )
    missing = [v for v in REQUIRED_ENV[name] if not env.get(v)]
    if missing:
        problems.append(f"missing required for SERVICE_ENV={name}: {', '.join(missing)}")
    tz = env.get("TZ")
    if tz and tz not in ("UTC", "Etc/UTC", ":UTC"):
        problems.append(f"TZ must be UTC, got {tz!r}")
    level = env.get("LOG_LEVEL")
    if level and level.upper() not in _LOG_LEVELS:
        problems.append(f"LOG_LEVEL must be one of {list(_LOG_LEVELS)}, got {level!r}")
    backend = env.get("STORAGE_BACKEND") or None
    if backend is not None and backend not in ("local", "s3"):
        problems.append(f"STORAGE_BACKEND must be 'local' or 's3', got {backend!r}")
    for var in ("POSTGRES_URL", "REDIS_URL"):
        val = env.get(var)
        if val:
            problems.extend(_url_problems(var, val))
    problems.extend(_notify_problems(env))
    if problems:
        raise ConfigError(
            "CONFIG_ENV_INVALID",
            "ENV refused: " + "; ".join(problems),
            details={"service_env": name, "missing": missing},
        )
    return EnvSettings(
        service_env=name,
        log_level=level.upper() if level else None,
        postgres_url=env.get("POSTGRES_URL") or None,
        redis_url=env.get("REDIS_URL") or None,
        twelvedata_api_key=env.get("TWELVEDATA_API_KEY") or None,
        storage_backend=backend,
        archive_path=env.get("ARCHIVE_PATH") or None,
        slack_webhook_url=env.get("SLACK_WEBHOOK_URL") or None,
        pagerduty_integration_key=env.get("PAGERDUTY_INTEGRATION_KEY") or None,
    )
