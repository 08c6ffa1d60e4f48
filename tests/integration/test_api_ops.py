"""/ops/halt and /ops/flatten through the live API: soft and hard, named pairs and the whole
book, the flatten latch; each change audited with actor, role, reason, request id and the flags
before and after; a refused call audited as refused; the body limit and odd bodies answered
with the one error body, never a 5xx."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlcore.observability import listing
from tests.integration._api_support import Api, api_config, client, live_api


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    with live_api(api_config(tmp_path, monkeypatch)) as live:
        yield live


def _post(api: Api, path: str, body: Any, rid: str, who: str = "eddie") -> httpx.Response:
    with client(api) as http:
        return http.post(path, json=body, headers=api.headers(who, rid=rid))


def test_halts_and_flatten_change_the_flags_and_are_audited(api: Api) -> None:
    resp = _post(api, "/ops/halt", {"level": "hard", "pairs": ["XAU_XAG"], "reason": "r1"}, "h1")
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "h1"
    assert resp.json()["after"]["hard_halted_pairs"] == ["XAU_XAG"]
    resp = _post(api, "/ops/halt", {"level": "soft", "reason": "r2"}, "h2")
    assert resp.json()["after"]["global_halt"] is True
    resp = _post(api, "/ops/flatten", {"pairs": None, "reason": "r3"}, "f1")
    body = resp.json()
    assert body["before"]["flatten_all"] is False and body["after"]["flatten_all"] is True
    assert body["after"]["seq"] == body["before"]["seq"] + 1 == 3
    rows = {a.request_id: a for a in api.registry.actions() if a.action.startswith("ops.")}
    assert [rows[r].reason for r in ("h1", "h2", "f1")] == ["r1", "r2", "r3"]
    flat = rows["f1"]
    assert (flat.action, flat.actor, flat.role, flat.result) == (
        "ops.flatten",
        "eddie",
        "editor",
        "ok",
    )
    assert flat.before == body["before"] and flat.after == body["after"]
    # Each done action notifies: a hard halt and a flatten page (critical), a soft halt warns.
    raised = {a.details["request_id"]: a for a in api.registry.alerts() if a.channel == "ops"}
    assert {rid: (a.code, str(a.severity)) for rid, a in raised.items()} == {
        "h1": ("OPS_ACTION_HALT", "critical"),
        "h2": ("OPS_ACTION_HALT", "warning"),
        "f1": ("OPS_ACTION_FLATTEN", "critical"),
    }
    assert "XAU_XAG" in raised["h1"].message and "r1" in raised["h1"].message
    paged = {n.alert_id for n in listing(api.registry.engine, ("pending",), 100)
             if n.target == "pagerduty"}  # fmt: skip
    assert paged == {raised["h1"].alert_id, raised["f1"].alert_id}


def test_a_refused_call_is_audited_and_changes_nothing(api: Api) -> None:
    resp = _post(
        api, "/ops/halt", {"level": "soft", "pairs": ["EUR_GBP", "NOPE"], "reason": "typo"}, "bad1"
    )
    body = resp.json()
    assert (resp.status_code, body["code"], body["field"]) == (
        404,
        "OPS_PAIR_UNKNOWN",
        "body.pairs[1]",
    )
    row = next(a for a in api.registry.actions(action="ops.halt") if a.request_id == "bad1")
    assert api.registry.alerts() == []  # refused: nothing done, nothing to notify
    assert row.result == "refused" and row.details["code"] == "OPS_PAIR_UNKNOWN"
    with client(api) as http:
        flags = http.get("/ops/flags", headers=api.headers("vic")).json()["flags"]
    assert flags["halted_pairs"] == [] and flags["seq"] == 0


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code", "field"),
    [
        (b"{", "application/json", 400, "API_REQUEST_MALFORMED", "body"),
        (b"[]", "application/json", 422, "API_REQUEST_INVALID", "body"),
        (
            b'{"level": "soft", "reason": "a\\nb"}',
            "application/json",
            422,
            "API_REQUEST_INVALID",
            "body.reason",
        ),
        (
            b'{"level": "soft", "reason": "x"}',
            "text/plain",
            415,
            "API_REQUEST_CONTENT_TYPE",
            "Content-Type",
        ),
        (b"x" * 70_000, "application/json", 413, "API_REQUEST_TOO_LARGE", "body"),
        (b"\xff\xfe", "application/json", 400, "API_REQUEST_MALFORMED", "body"),
        (b"[" * 5000, "application/json", 400, "API_REQUEST_MALFORMED", "body"),
    ],
)
def test_hostile_bodies_get_the_error_body(
    api: Api, content: bytes, ctype: str, status: int, code: str, field: str
) -> None:
    with client(api) as http:
        resp = http.post(
            "/ops/halt", content=content, headers={**api.headers("eddie"), "Content-Type": ctype}
        )
    assert (resp.status_code, resp.json()["code"], resp.json()["field"]) == (status, code, field)


def test_a_streamed_body_over_the_limit_is_refused(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 4096

    with client(api) as http:
        resp = http.post(
            "/ops/halt",
            content=chunks(),
            headers={**api.headers("eddie"), "Content-Type": "application/json"},
        )
    assert (resp.status_code, resp.json()["code"]) == (413, "API_REQUEST_TOO_LARGE")


def test_a_rollback_with_nothing_deployed_is_refused_and_audited(api: Api) -> None:
    for body in (
        {"kind": "model", "reason": "bad model"},
        {"kind": "theta", "to": [0.6, 0.6], "reason": "bad theta"},
    ):
        with client(api) as http:
            resp = http.post(
                "/ops/rollback", json=body, headers=api.headers("oscar", rid=f"rb-{body['kind']}")
            )
        assert (resp.status_code, resp.json()["code"]) == (409, "OPS_ROLLBACK_NO_TARGET")
        row = next(
            a
            for a in api.registry.actions(action="ops.rollback")
            if a.request_id == f"rb-{body['kind']}"
        )
        assert (row.actor, row.role, row.result) == ("oscar", "approver", "refused")


def test_a_slow_body_is_cut_off_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_api(api_config(tmp_path, monkeypatch), body_timeout_s=1.0) as slow:
        host, port = slow.url.split("//")[1].split("/")[0].split(":")
        token = slow.people["eddie"].token
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                f"POST /api/v1/ops/halt HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                f"{token}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n"
                "\r\n{".encode()
            )
            start, answer = time.monotonic(), b""
            sock.settimeout(0.2)
            while time.monotonic() - start < 8 and b"\r\n\r\n{" not in answer:
                try:
                    sock.sendall(b" ")  # one byte at a time, Slowloris-style
                    answer += sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert b'"API_REQUEST_TIMEOUT"' in answer and time.monotonic() - start < 5
        with client(slow) as http:  # nothing halted, the server still answers
            flags = http.get("/ops/flags", headers=slow.headers("vic")).json()["flags"]
        assert flags["global_halt"] is False


def test_a_trailing_slash_is_not_redirected_to_the_host_header(api: Api) -> None:
    with client(api) as http:
        for method, path in (("POST", "/ops/halt/"), ("GET", "/ops/flags/")):
            resp = http.request(
                method, path, headers={**api.headers("eddie"), "Host": "evil.example"}, json={}
            )
            assert "location" not in resp.headers, resp.headers
            assert (resp.status_code, resp.json()["code"]) == (404, "API_ROUTE_NOT_FOUND")


def test_a_refusal_before_authentication_is_audited(api: Api) -> None:
    with client(api) as http:
        big = http.post(
            "/ops/halt",
            content=b"x" * 70_000,
            headers={"Content-Type": "application/json", "X-Request-ID": "big-1"},
        )
        bad = http.get("/ops/flags", headers={"X-Request-ID": "bad id!"})
    assert (big.status_code, bad.status_code) == (413, 400)
    rows = api.registry.actions(action="api.refused")
    first = rows[0]
    assert (first.request_id, first.actor, first.result.value) == ("big-1", "anonymous", "refused")
    assert (first.details or {}).get("code") == "API_REQUEST_TOO_LARGE"
    assert (rows[1].details or {}).get("code") == "API_REQUEST_ID_INVALID"
    assert (rows[1].details or {}).get("path") == "/api/v1/ops/flags"
