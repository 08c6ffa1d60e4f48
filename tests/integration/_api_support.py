"""The Ops API under a real uvicorn on loopback (in a thread of the test process), its users
with their tokens and TOTP codes, and what the audit trail recorded."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import update

from mlcore.api import Duty, Role, Users, create_app
from mlcore.config import AppConfig, load_config
from mlcore.registry import Registry, registry_for
from mlcore.registry._tables import api_users
from tests.conftest import config_with, free_port


@dataclass(frozen=True)
class Person:
    """A test user: name, role, duty and their token."""

    name: str
    role: Role
    duty: Duty
    token: str


@dataclass
class Api:
    """A live API: its base URL, app, registry and people."""

    url: str
    app: FastAPI
    cfg: AppConfig
    registry: Registry
    users: Users
    people: dict[str, Person]

    def headers(self, who: str | None, *, totp: bool | str = True, rid: str | None = None
                ) -> dict[str, str]:  # fmt: skip
        """Headers of ``who`` (None: no token), with a fresh TOTP code for approvers and
        admins unless ``totp`` is False (or the code given)."""
        out = {"X-Request-ID": rid or uuid.uuid4().hex}
        if who is None:
            return out
        person = self.people[who]
        out["Authorization"] = f"Bearer {person.token}"
        if isinstance(totp, str):
            out["X-TOTP"] = totp
        elif totp and person.role.needs_totp:
            out["X-TOTP"] = self.fresh_totp(who)
        return out

    def fresh_totp(self, who: str) -> str:
        """A code of ``who`` accepted once more (its used step forgotten: tests call faster
        than 30 s steps)."""
        with self.registry.engine.begin() as conn:
            conn.execute(update(api_users).where(api_users.c.name == who)
                         .values(totp_last_step=None))  # fmt: skip
        return self.users.totp_now(who)

    def denied(self, request_id: str) -> list[object]:
        """api.denied rows of one request."""
        return [a for a in self.registry.actions(action="api.denied")
                if a.request_id == request_id]  # fmt: skip


PEOPLE = {
    "vic": (Role.VIEWER, Duty.NONE),
    "eddie": (Role.EDITOR, Duty.OPS),
    "erin": (Role.EDITOR, Duty.RISK),
    "oscar": (Role.APPROVER, Duty.OPS),
    "rita": (Role.APPROVER, Duty.RISK),
    "ada": (Role.ADMIN, Duty.NONE),
    "gone": (Role.ADMIN, Duty.OPS),  # its token is revoked
}


def api_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, postgres: str | None = None,
    redis: str | None = None,
) -> AppConfig:  # fmt: skip
    """The dev config with its archive under ``tmp_path``, a private flags key, and
    POSTGRES_URL / REDIS_URL when given (else SQLite and the flags file)."""
    root = config_with(tmp_path, {"serving_policy": {"redis": {
        "ops_flags_key": f"test:api:{uuid.uuid4().hex}"}}})  # fmt: skip
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    for var, value in (("POSTGRES_URL", postgres), ("REDIS_URL", redis)):
        if value is not None:
            monkeypatch.setenv(var, value)
    return load_config(root, "dev")


@contextmanager
def live_api(cfg: AppConfig, body_timeout_s: float | None = None) -> Iterator[Api]:
    """The API over ``cfg`` under uvicorn on a loopback port, with the PEOPLE."""
    registry = registry_for(cfg)
    app = (create_app(cfg, registry=registry) if body_timeout_s is None
           else create_app(cfg, registry=registry, body_timeout_s=body_timeout_s))  # fmt: skip
    users = Users(registry.engine)
    people = {}
    for name, (role, duty) in PEOPLE.items():
        users.add(name, role, duty)
        issued = users.issue(name)
        people[name] = Person(name, role, duty, issued.token)
        if name == "gone":
            users.revoke(issued.token_id)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield Api(url, app, cfg, registry, users, people)
    finally:
        server.should_exit = True
        thread.join(10)
        registry.engine.dispose()
        store = app.state.ctx.flags
        if store.client is not None:  # a private key on the shared Redis: leave nothing behind
            store.client.delete(store.key)


def client(api: Api) -> httpx.Client:
    """An HTTP client on the API."""
    return httpx.Client(base_url=api.url, timeout=10)
