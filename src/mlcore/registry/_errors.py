"""The registry's errors: a refused request (a person must act) and an unreachable database
(retry later). Codes are listed in :mod:`mlcore.errors`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.exc import InterfaceError, OperationalError

from mlcore.errors import FatalError, RetryableError


class RegistryError(FatalError, ValueError):
    """A registry request that cannot be carried out, with the reason (still a ``ValueError``,
    as it was before it had a code)."""

    str_with_code = False


class RegistryUnavailable(RetryableError):
    """The registry database does not answer (server down, refused, unreachable file)."""


@contextmanager
def _unavailable(url: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        first = str(exc.orig or exc).strip().splitlines()
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
