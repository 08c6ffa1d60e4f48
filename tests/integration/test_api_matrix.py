"""Every route of the Ops API × every caller (no token, a malformed, unknown or revoked token,
each role, the wrong duty, no or a bad or a replayed TOTP code), on a live uvicorn on loopback:
allowed or denied as the route declares, and every denial audited as ``api.denied`` with its
request id. The routes come from the app's route table: a new route cannot escape."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcore.api import Role
from tests.conftest import postgres_url, redis_url
from tests.integration._api_support import PEOPLE, Api, api_config, client, live_api

CALLERS: list[str | None] = [None, "bad", "gone", *PEOPLE]
BAD_TOTP: list[tuple[bool | str, str]] = [
    (False, "API_AUTH_TOTP_MISSING"), ("000000", "API_AUTH_TOTP_INVALID"),
    ("12345", "API_AUTH_TOTP_INVALID"),
]  # fmt: skip


def _routes(api: Api) -> list[tuple[str, str, dict[str, object]]]:
    """(method, path, access) of every operation of the app's own OpenAPI document (each
    route declares its access there, or the app refuses to start)."""
    out = []
    for path, ops in api.app.openapi()["paths"].items():
        for method, op in ops.items():
            concrete = re.sub(r"\{[^}]+\}", "no-such-id", path)
            out.append((method.upper(), concrete, op["x-access"]))
    return out


def _expected(api: Api, who: str | None, spec: dict[str, object]) -> str | None:
    """The code a call must be refused with (None: let in)."""
    if spec["role"] == "none":
        return None
    if who is None:
        return "API_AUTH_TOKEN_MISSING"
    if who == "bad":
        return "API_AUTH_TOKEN_INVALID"
    if who == "gone":
        return "API_AUTH_TOKEN_REVOKED"
    person = api.people[who]
    if person.role.rank < Role(str(spec["role"])).rank:
        return "API_AUTH_ROLE_DENIED"
    duties = spec.get("duties")
    if isinstance(duties, list) and person.role is not Role.ADMIN and person.duty not in duties:
        return "API_AUTH_DUTY_DENIED"
    return None


def _call(api: Api, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    with client(api) as http:
        # An empty object: a caller let in meets the body's validation (422), never a change.
        body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        resp = http.request(method, path.removeprefix("/api/v1"), headers=headers, **body)
    return resp.status_code, resp.json()


def _headers(api: Api, who: str | None, rid: str, **kw: object) -> dict[str, str]:
    if who == "bad":
        return {"X-Request-ID": rid, "Authorization": "Bearer " + "x" * 43}
    return api.headers(who, rid=rid, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["embedded", "postgres+redis"])
def api(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:  # fmt: skip
    if request.param == "embedded":
        cfg = api_config(tmp_path, monkeypatch)
        with live_api(cfg) as live:
            yield live
        return
    pg = postgres_url()
    url = next(pg)
    try:
        with live_api(api_config(tmp_path, monkeypatch, postgres=url, redis=redis_url())) as live:
            yield live
    finally:
        pg.close()


def test_every_route_times_every_caller(api: Api) -> None:
    routes = _routes(api)
    assert len(routes) >= 4 and all(spec["role"] in ("none", *Role) for _m, _p, spec in routes)
    for method, path, spec in routes:
        for who in CALLERS:
            rid = uuid.uuid4().hex
            status, body = _call(api, method, path, _headers(api, who, rid))
            want = _expected(api, who, spec)
            where = f"{method} {path} as {who}"
            if want is None:
                assert status not in (401, 403), f"{where}: refused {body}"
                assert not api.denied(rid), where
            else:
                assert (body["code"], status in (401, 403)) == (want, True), f"{where}: {body}"
                assert set(body) == {"code", "message", "field"}, where
                rows = api.denied(rid)
                assert len(rows) == 1 and rows[0].result == "denied", f"{where}: not audited"
                assert rows[0].details["code"] == want, where


def test_totp_is_required_where_declared_and_used_once(api: Api) -> None:
    totp_routes = [(m, p) for m, p, spec in _routes(api) if spec["totp"]]
    plain_routes = [
        (m, p) for m, p, spec in _routes(api) if spec["role"] != "none" and not spec["totp"]
    ]
    for method, path in plain_routes:  # below approver level: no code asked
        assert _call(api, method, path, api.headers("ada", totp=False))[0] not in (401, 403)
    for method, path in totp_routes:
        for who in ("oscar", "ada"):
            for totp, want in BAD_TOTP:
                rid = uuid.uuid4().hex
                status, body = _call(api, method, path, api.headers(who, totp=totp, rid=rid))
                if totp == "000000" and api.users.totp_now(who) == "000000":
                    continue  # one chance in a million
                assert (status, body["code"], body["field"]) == (401, want, "X-TOTP"), body
                assert len(api.denied(rid)) == 1
            code = api.fresh_totp(who)
            assert _call(api, method, path, api.headers(who, totp=code))[0] not in (401, 403)
            rid = uuid.uuid4().hex
            status, body = _call(api, method, path, api.headers(who, totp=code, rid=rid))
            assert (status, body["code"]) == (401, "API_AUTH_TOTP_REPLAYED")
            assert len(api.denied(rid)) == 1
    if not totp_routes:
        pytest.fail("no route needs TOTP: the approver-level routes are missing")
