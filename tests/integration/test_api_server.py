"""`mlcore api serve` as a process: over TLS (a self-signed pair made by openssl) on loopback
with PostgreSQL and Redis, and plain on loopback with the embedded default (SQLite, the flags
file); users and tokens made by the CLI; the token never in the server's output. Off loopback
without TLS, or half a TLS pair, the server refuses to start."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from mlcore.config import load_config
from mlcore.registry import registry_for
from tests.conftest import REPO, config_with, free_port, postgres_url, redis_url


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_URL", "REDIS_URL")}
    return {
        **env,
        "ARCHIVE_PATH": str(tmp_path / "archive"),
        "PYTHONPATH": str(REPO / "src"),
        **extra,
    }


def _cli(env: dict[str, str], root: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mlcore", *args, "--config-root", str(root)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _token(env: dict[str, str], root: Path, name: str, role: str) -> str:
    _cli(env, root, "api", "user", "add", name, "--role", role, "--duty", "ops")
    return _cli(env, root, "api", "token", "issue", name).strip().splitlines()[-1]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], root: Path, port: int, *tls: str) -> Path:
        log = tmp_path / f"serve-{port}.log"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlcore",
                    "api",
                    "serve",
                    "--port",
                    str(port),
                    *tls,
                    "--config-root",
                    str(root),
                ],
                env=env,
                cwd=REPO,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        return log

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _ready(http: httpx.Client, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the API did not answer: {log.read_text()[-2000:]}")


def test_tls_on_loopback_with_postgres_and_redis(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    key_name = f"test:api:{uuid.uuid4().hex}"
    root = config_with(tmp_path, {"serving_policy": {"redis": {"ops_flags_key": key_name}}})
    pg = postgres_url()
    url = next(pg)
    try:
        env = _env(tmp_path, POSTGRES_URL=url, REDIS_URL=redis_url())
        token = _token(env, root, "eddie", "editor")
        cert, key = _self_signed(tmp_path)
        port = free_port()
        log = serve(env, root, port, "--tls-cert", str(cert), "--tls-key", str(key))
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(
            base_url=f"https://127.0.0.1:{port}/api/v1", verify=trust, timeout=10
        ) as http:
            _ready(http, log)
            resp = http.post(
                "/ops/halt",
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "tls-halt-1"},
                json={"level": "soft", "pairs": ["EUR_GBP"], "reason": "drill"},
            )
            assert resp.status_code == 200, resp.text
        with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
        with pytest.raises(httpx.ConnectError):  # a certificate we do not trust
            httpx.get(f"https://127.0.0.1:{port}/api/v1/health", timeout=5)
        doc = json.loads(redis.Redis.from_url(redis_url()).get(key_name) or b"{}")
        assert doc["halted_pairs"] == ["EUR_GBP"]
        os.environ["POSTGRES_URL"] = url  # read the audit trail of that database
        try:
            reg = registry_for(load_config(root, "dev"))
        finally:
            del os.environ["POSTGRES_URL"]
        rows = [a for a in reg.actions(action="ops.halt") if a.request_id == "tls-halt-1"]
        assert rows and rows[0].actor == "eddie" and rows[0].after["halted_pairs"] == ["EUR_GBP"]
        reg.engine.dispose()
        assert token not in log.read_text()
    finally:
        redis.Redis.from_url(redis_url()).delete(key_name)
        pg.close()


def test_plain_on_loopback_with_the_embedded_default(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    root = config_with(tmp_path, {})
    env = _env(tmp_path)
    token = _token(env, root, "eddie", "editor")
    port = free_port()
    log = serve(env, root, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10) as http:
        _ready(http, log)
        resp = http.post(
            "/ops/flatten",
            headers={"Authorization": f"Bearer {token}"},
            json={"pairs": ["XAU_XAG"], "reason": "drill"},
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-request-id"] == resp.json()["request_id"]
    flags = json.loads((tmp_path / "archive" / "serving" / "ops_flags.json").read_text())
    assert flags["flatten_pairs"] == ["XAU_XAG"]
    assert token not in log.read_text()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--host", "0.0.0.0"], "API_TLS_REQUIRED"),  # noqa: S104
        (["--tls-cert", "cert.pem"], "API_TLS_INCOMPLETE"),
        (["--tls-cert", "nothing.pem", "--tls-key", "nothing.pem"], "API_TLS_UNREADABLE"),
    ],
)
def test_serve_refuses_an_unsafe_or_half_tls_setup(
    tmp_path: Path, args: list[str], code: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlcore", "api", "serve", *args],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and code in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
