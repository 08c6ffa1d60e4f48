"""What a Redis error means for a command outside ``mlcore serve``: a Redis that does not
answer (worth a retry), a REDIS_URL whose settings Redis refuses, or a request it refuses (a
key of another type, a read-only replica, no memory left, no permission). One line naming
Redis, the URL without its password, the operation and what to do; never a traceback."""

from __future__ import annotations

from mlcore.errors import ConfigError, MlcoreError, RefusedError, RetryableError


def redacted_url(url: str) -> str:
    """``url`` with its password (anything after the user name) shown as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"


def _first_line(exc: BaseException, url: str) -> str:
    text = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    _scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:  # never repeat the password, should the client have echoed it
        creds = rest.rsplit("@", 1)[0]
        secret = creds.split(":", 1)[1] if ":" in creds else creds
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text[:300]


def redis_failure(
    exc: BaseException, url: str, operation: str, *, prefix: str, before: str = "", retry: str
) -> MlcoreError:
    """The coded error for ``exc`` raised while doing ``operation`` on the Redis of ``url``:

    - ``{prefix}_UNREACHABLE`` (retryable, exit 75): no connection, a timeout, a server
      loading its data or without its primary;
    - ``{prefix}_URL_INVALID`` (config, exit 2): no such database number, a port that does not
      speak Redis;
    - ``{prefix}_REFUSED`` (exit 69): a failed login, a key of another type (WRONGTYPE), a
      read-only replica, no memory left (OOM), no permission, any other refusal.

    ``before`` opens the message (what already happened); ``retry`` says how to try again."""
    import redis.exceptions as rx

    where = f"Redis at {redacted_url(url)}"
    why = _first_line(exc, url)
    code = why.split(" ", 1)[0]
    head = f"{before}{operation} on {where} failed"
    if isinstance(exc, rx.AuthenticationError) or any(
        k in why for k in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username",
                           "without any password configured")
    ):  # fmt: skip
        return RefusedError(
            f"{prefix}_REFUSED",
            f"{head}: authentication failed ({why}): fix the user and password in REDIS_URL, "
            f"then {retry}",
        )
    if "DB index" in why or "invalid DB" in why or "Protocol error" in why:
        what = "no such database number" if "DB" in why else "the port does not speak Redis"
        return ConfigError(
            f"{prefix}_URL_INVALID", f"{head}: {what} ({why}): fix REDIS_URL, then {retry}"
        )
    if isinstance(exc, rx.ResponseError) and code in ("LOADING", "MASTERDOWN", "TRYAGAIN",
                                                      "BUSY", "CLUSTERDOWN"):  # fmt: skip
        return RetryableError(f"{prefix}_UNREACHABLE", f"{head}: {why}: {retry} in a while")
    if isinstance(exc, rx.ResponseError):
        hints = {
            "WRONGTYPE": "a key it writes holds another type: delete or rename that key",
            "READONLY": "REDIS_URL names a read-only replica: point it at the primary",
            "OOM": "Redis is out of memory (maxmemory): free memory or raise the limit",
            "NOPERM": "REDIS_URL's user may not run this: grant it in Redis's ACL",
        }
        # redis-py drops the code from the errors it has a class for
        for cls, name in ((rx.ReadOnlyError, "READONLY"), (rx.OutOfMemoryError, "OOM"),
                          (rx.NoPermissionError, "NOPERM")):  # fmt: skip
            if isinstance(exc, cls):
                code = name
        hint = hints.get(code, "fix Redis or REDIS_URL")
        return RefusedError(f"{prefix}_REFUSED", f"{head}: {why}: {hint}, then {retry}")
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError, OSError)):
        return RetryableError(f"{prefix}_UNREACHABLE", f"{head}: {why}: {retry} once Redis answers")
    return RefusedError(f"{prefix}_REFUSED", f"{head}: {why}: fix Redis or REDIS_URL, then {retry}")
