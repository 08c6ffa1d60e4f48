"""The registry's errors: a refused request (a person must act) and an unreachable database
(retry later). Codes are listed in :mod:`mlcore.errors`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.exc import InterfaceError, OperationalError

from mlcore.errors import ConfigError, FatalError, RetryableError


class RegistryError(FatalError, ValueError):
    """A registry request that cannot be carried out, with the reason (still a ``ValueError``,
    as it was before it had a code)."""

    str_with_code = False


class RegistryUnavailable(RetryableError):
    """The registry database does not answer (server down, refused, unreachable file)."""


#: What a refused connection says (libpq, SQLite) when its settings are wrong: a person must
#: fix POSTGRES_URL or the registry file, retrying will not help.
_REFUSALS = (
    ("does not exist", "the database or role does not exist"),
    ("password authentication failed", "authentication failed"),
    ("authentication failed", "authentication failed"),
    ("no password supplied", "the server wants a password"),
    ("no pg_hba.conf entry", "the server does not allow this user or host"),
    ("invalid ", "an option of the URL is invalid"),
    ("unable to open database file", "the SQLite file cannot be opened (a folder? unwritable?)"),
)


def refusal(text_: str) -> str | None:
    """Why a failed connection's message means its settings are wrong (None: maybe transient)."""
    low = text_.lower()
    return next((why for key, why in _REFUSALS if key in low), None)


@contextmanager
def _unavailable(url: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        first = str(exc.orig or exc).strip().splitlines()
        reason = refusal(first[0]) if first else None
        if reason is not None:
            raise ConfigError(
                "REGISTRY_DB_REFUSED",
                f"registry database {url} refused: {reason} ({first[0]}); fix POSTGRES_URL "
                "or the registry file",
                details={"url": url},
            ) from None
        raise RegistryUnavailable(
            "REGISTRY_DB_UNAVAILABLE",
            f"registry database {url} does not answer ({first[0] if first else 'no reason'}); "
            "check that it runs and retry",
        ) from exc


def check_connection(engine: Engine) -> None:
    """Open one connection and run ``SELECT 1``: ``RegistryUnavailable`` if the database does
    not answer. Only this first contact is retryable; later errors keep their own types."""
    with _unavailable(engine.url.render_as_string(hide_password=True)), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
