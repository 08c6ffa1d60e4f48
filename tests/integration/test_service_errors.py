"""The registry database and Redis: settings they refuse are a config error (exit 2),
only a server that does not answer is worth a retry (exit 75), and nothing waits forever."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcore.errors import ConfigError, MlcoreError, RefusedError, RetryableError
from mlcore.registry import _db as db
from mlcore.registry import check_connection
from tests.conftest import free_port

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"{PG}/mlcore_no_such_db", "does not exist"),
        ("postgresql+psycopg://mlcore_no_such_role@127.0.0.1:5432/postgres", "does not exist"),
        (f"{PG}/postgres?sslmode=bogus", "sslmode"),
    ],
)
def test_a_connection_refused_for_its_settings_is_a_config_error(url: str, fragment: str) -> None:
    """Review: a missing database, an unknown role, ?sslmode=bogus all ended in 75 'retry'."""
    with pytest.raises(ConfigError) as exc:
        check_connection(db.make_engine(url))
    assert exc.value.code == "REGISTRY_DB_REFUSED", exc.value
    assert fragment in exc.value.message and "retry" not in exc.value.message


def test_a_registry_db_that_is_a_folder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "registry.db").mkdir()
    with pytest.raises(ConfigError) as exc:
        check_connection(db.make_engine(f"sqlite:///{tmp_path / 'registry.db'}"))
    assert exc.value.code == "REGISTRY_DB_REFUSED", exc.value


def test_a_refused_port_is_still_retryable() -> None:
    with pytest.raises(RetryableError) as exc:
        check_connection(db.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"))
    assert exc.value.code == "REGISTRY_DB_UNAVAILABLE"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def _accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=_accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for s in held:
        s.close()
    srv.close()


def test_a_server_that_never_answers_times_out(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: POSTGRES_URL on Redis's port hung registry list for more than 100 s."""
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 1)
    start = time.monotonic()
    with pytest.raises(RetryableError):
        check_connection(db.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/x"))
    assert time.monotonic() - start < 10


def test_an_unreachable_unix_socket_redis_is_named_by_its_path(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: a unix-socket REDIS_URL was reported as 'Redis at None:None'."""
    from mlcore.config import load_config
    from mlcore.serving._serve import check_reachable
    from tests.conftest import CONFIG_ROOT

    sock = archive.parent / "no-redis.sock"
    monkeypatch.setenv("REDIS_URL", f"unix://{sock}?db=0")
    with pytest.raises(RetryableError) as exc:
        check_reachable(load_config(CONFIG_ROOT, "dev"), "redis", wait_s=0.1)
    assert f"Redis at {sock})" in exc.value.message, exc.value.message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://127.0.0.1:6379/99999", "DB index is out of range"),
        ("redis://mlcore_nobody:wrong@127.0.0.1:6379/0", "invalid username-password"),
    ],
)
def test_a_redis_that_refuses_the_settings_is_a_config_error_at_once(
    archive: Path, monkeypatch: pytest.MonkeyPatch, url: str, fragment: str
) -> None:
    """Review: db 99999 or a wrong password waited 10 s and ended in 75 'retry'."""
    from mlcore.config import load_config
    from mlcore.serving._serve import check_reachable
    from tests.conftest import CONFIG_ROOT

    monkeypatch.setenv("REDIS_URL", url)
    start = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        check_reachable(load_config(CONFIG_ROOT, "dev"), "redis", wait_s=5)
    assert exc.value.code == "SERVING_SOURCE_REFUSED", exc.value
    assert fragment in exc.value.message and "wrong" not in exc.value.message
    assert time.monotonic() - start < 3


def test_publishing_to_a_redis_that_never_answers_does_not_hang(
    archive: Path, monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    """The publish flow's notice to serving had no Redis timeout: a silent port hung it."""
    from mlcore.config import load_config
    from mlcore.flows import _flows
    from tests.conftest import CONFIG_ROOT

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{silent_port}/0")
    monkeypatch.setattr(_flows, "REDIS_TIMEOUT_S", 0.5)
    start = time.monotonic()
    with pytest.raises(RetryableError) as exc:
        _flows._notify(load_config(CONFIG_ROOT, "dev"), {"model_version": "v"})
    assert exc.value.code == "FLOWS_NOTICE_UNREACHABLE", exc.value
    assert time.monotonic() - start < 5


def _notice_error(monkeypatch: pytest.MonkeyPatch, url: str) -> MlcoreError:
    from mlcore.config import load_config
    from mlcore.flows import _flows
    from tests.conftest import CONFIG_ROOT

    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setattr(_flows, "REDIS_TIMEOUT_S", 2.0)
    cfg = load_config(CONFIG_ROOT, "dev")
    with pytest.raises(MlcoreError) as exc:
        _flows._notify(cfg, {"model_version": "20250101_0000_abc1234"})
    # The notice file went out first: `mlcore serve` on this archive still moves.
    assert (cfg.paths.archive / "serving" / "deployed.json").is_file()
    return exc.value


@pytest.mark.parametrize(
    ("url", "kind", "code", "fragment"),
    [
        # Nothing listens there: retry later.
        (f"redis://:s3cr3t@127.0.0.1:{free_port()}/0", RetryableError,
         "FLOWS_NOTICE_UNREACHABLE", "Connection refused"),
        # The real server refuses a user it does not know (no server setting changed).
        ("redis://mlcore_nobody:s3cr3t@127.0.0.1:6379/0", RefusedError, "FLOWS_NOTICE_REFUSED",
         "authentication failed"),
        ("redis://:s3cr3t@127.0.0.1:6379/99999", ConfigError, "FLOWS_NOTICE_URL_INVALID",
         "no such database number"),
    ],
    ids=["unreachable", "unknown-user", "no-such-db"],  # the free port differs per xdist worker
)  # fmt: skip
def test_a_notice_redis_refuses_is_one_line_saying_the_deployment_stands(
    archive: Path, monkeypatch: pytest.MonkeyPatch, url: str, kind: type, code: str, fragment: str
) -> None:
    """Review: a Redis refusal at the publish flow's notice (after the registry committed the
    deployment) was redis-py's plain error, a traceback at the command line."""
    from tests.conftest import redis_url

    redis_url()  # skips without the real Redis (fails in CI)
    err = _notice_error(monkeypatch, url)
    assert isinstance(err, kind) and err.code == code, err
    msg = err.message
    assert fragment in msg, msg
    assert "s3cr3t" not in msg and ":***@127.0.0.1:" in msg, msg
    assert "20250101_0000_abc1234 is deployed in the registry (that change stands)" in msg
    assert "SET and PUBLISH core:models:deployed" in msg
    assert "mlcore flows run publish --model 20250101_0000_abc1234" in msg
    assert "\n" not in msg


def test_a_redis_refusing_the_request_is_named_with_what_to_do() -> None:
    """WRONGTYPE (a key someone set to another type), answered by the real Redis, and READONLY
    / OOM as Redis words them: exit 69 naming Redis, the operation and the fix."""
    import uuid

    import redis

    from mlcore._redis import redis_failure
    from mlcore.cli._app import exit_code
    from tests.conftest import redis_url

    url = redis_url()
    client = redis.Redis.from_url(url)
    key = f"test:{uuid.uuid4().hex[:8]}:notice"
    client.set(key, "a string")
    try:
        with pytest.raises(redis.ResponseError) as wrong:
            client.lpush(key, "x")
    finally:
        client.delete(key)
    assert not client.exists(key)
    cases = [
        (wrong.value, "WRONGTYPE", "delete or rename that key"),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
         "read only replica", "point it at the primary"),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
         "maxmemory", "free memory or raise the limit"),
    ]  # fmt: skip
    for exc, fragment, hint in cases:
        err = redis_failure(exc, "redis://u:pw@127.0.0.1:6379/0", "SET k", prefix="FLOWS_NOTICE",
                            retry="run it again")  # fmt: skip
        assert isinstance(err, RefusedError) and exit_code(err) == 69, err
        assert err.code == "FLOWS_NOTICE_REFUSED"
        assert "SET k on Redis at redis://u:***@127.0.0.1:6379/0 failed" in err.message
        assert fragment in err.message and hint in err.message, err.message
        assert "pw" not in err.message.replace("primary", "")
