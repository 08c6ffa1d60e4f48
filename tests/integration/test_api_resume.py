"""The two-person resume through the live API: requested by one duty, approved by a person of
the other bound to the request's hash, canary (ceil 20%) first, the rest after the KPI watch
or on a second approved step; self-approval, the same duty, a replayed or expired approval,
an edited request, a drawdown on the canary: each refused with its own code and audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from mlcore.registry._tables import resume_requests
from tests.integration._api_support import Api, api_config, client, live_api

PAIRS = ["BTC_ETH", "EUR_GBP", "XAU_XAG"]


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    with live_api(api_config(tmp_path, monkeypatch)) as live:
        yield live


def _post(api: Api, who: str, path: str, body: dict[str, Any], **kw: Any) -> tuple[int, dict]:
    with client(api) as http:
        resp = http.post(path, json=body, headers=api.headers(who, **kw))
    return resp.status_code, resp.json()


def _flags(api: Api) -> dict[str, Any]:
    with client(api) as http:
        return dict(http.get("/ops/flags", headers=api.headers("vic")).json()["flags"])


def _halted_book(api: Api) -> dict[str, Any]:
    status, body = _post(api, "eddie", "/ops/halt", {"level": "soft", "reason": "incident 7"})
    assert status == 200 and body["after"]["global_halt"] is True
    return body


def _request(api: Api, who: str = "eddie", pairs: list[str] | None = None) -> dict[str, Any]:
    status, body = _post(api, who, "/ops/resume", {"pairs": pairs, "reason": "fixed"})
    assert status == 200, body
    assert body["status"] == "requested"
    return body


def _approve(api: Api, who: str, req: dict[str, Any], sha: str | None = None) -> tuple[int, dict]:
    return _post(
        api,
        who,
        f"/ops/resume/{req['request_id']}/approve",
        {"request_sha256": sha or req["request_sha256"], "reason": "checked"},
    )


def _refused(api: Api, action: str, code: str) -> bool:
    return any(
        a.result == "refused" and (a.details or {}).get("code") == code
        for a in api.registry.actions(action=action)
    )


def test_resume_with_two_people_canary_first_then_the_rest(api: Api) -> None:
    _halted_book(api)
    req = _request(api)  # eddie: ops
    assert _approve(api, "oscar", req)[1]["code"] == "OPS_RESUME_SAME_DUTY"  # ops too
    status, body = _approve(api, "rita", req, sha="0" * 64)
    assert (status, body["code"], body["field"]) == (
        409,
        "OPS_RESUME_REQUEST_CHANGED",
        "body.request_sha256",
    )
    status, body = _approve(api, "rita", req)  # risk: the other duty
    assert status == 200, body
    assert body["status"] == "canary" and body["approver"] == "rita"
    assert body["canary_pairs"] == ["BTC_ETH"] and body["rest_pairs"] == ["EUR_GBP", "XAU_XAG"]
    flags = _flags(api)
    assert flags["global_halt"] is False and flags["halted_pairs"] == ["EUR_GBP", "XAU_XAG"]
    assert _approve(api, "rita", req)[1]["code"] == "OPS_RESUME_ALREADY_APPROVED"  # replayed
    adv = f"/ops/resume/{req['request_id']}/advance"
    assert _post(api, "rita", adv, {"reason": "go"})[1]["code"] == "OPS_RESUME_WATCH_PENDING"
    status, body = _post(api, "rita", adv, {"reason": "go", "early": True})
    assert (status, body["code"]) == (403, "OPS_RESUME_SELF_APPROVAL")  # she approved it
    status, body = _post(api, "ada", adv, {"reason": "second approval", "early": True})
    assert status == 200 and body["status"] == "done", body
    assert _flags(api)["halted_pairs"] == [] and _flags(api)["global_halt"] is False
    steps = api.registry.actions(action="ops.resume.step")
    assert [s.result for s in steps][-1] == "ok" and steps[-1].after["halted_pairs"] == []
    approvals = [a for a in api.registry.actions(action="ops.resume.approve") if a.result == "ok"]
    assert approvals[0].before["global_halt"] is True and approvals[0].actor == "rita"
    for code in (
        "OPS_RESUME_SAME_DUTY",
        "OPS_RESUME_REQUEST_CHANGED",
        "OPS_RESUME_ALREADY_APPROVED",
    ):
        assert _refused(api, "ops.resume.approve", code), code
    assert _refused(api, "ops.resume.step", "OPS_RESUME_WATCH_PENDING")


def test_self_approval_expiry_and_an_edited_request_are_refused(api: Api) -> None:
    _halted_book(api)
    own = _request(api, who="oscar")  # an approver of duty ops asks ...
    status, body = _approve(api, "oscar", own)  # ... and cannot approve it himself
    assert (status, body["code"]) == (403, "OPS_RESUME_SELF_APPROVAL")
    late = _request(api)
    with api.registry.engine.begin() as conn:
        conn.execute(
            update(resume_requests)
            .where(resume_requests.c.request_id == late["request_id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert _approve(api, "rita", late)[1]["code"] == "OPS_RESUME_EXPIRED"
    assert _approve(api, "rita", late)[1]["code"] == "OPS_RESUME_ALREADY_APPROVED"  # expired
    edited = _request(api, pairs=["EUR_GBP"])
    with api.registry.engine.begin() as conn:  # someone widens the stored request
        conn.execute(
            update(resume_requests)
            .where(resume_requests.c.request_id == edited["request_id"])
            .values(body={"pairs": None, "reason": "fixed"})
        )
    assert _approve(api, "rita", edited)[1]["code"] == "OPS_RESUME_REQUEST_CHANGED"
    assert _flags(api)["global_halt"] is True  # nothing resumed by any of them
    for code in ("OPS_RESUME_SELF_APPROVAL", "OPS_RESUME_EXPIRED", "OPS_RESUME_REQUEST_CHANGED"):
        assert _refused(api, "ops.resume.approve", code), code


def test_the_rest_waits_for_the_watch_and_a_canary_drawdown_stops_it(api: Api) -> None:
    _halted_book(api)
    req = _request(api, who="erin")  # risk asks, ops approves
    status, body = _approve(api, "oscar", req)
    assert status == 200 and body["canary_pairs"] == ["BTC_ETH"]
    watch = api.cfg.runbook.resume_policy.kpi_watch_minutes
    with api.registry.engine.begin() as conn:  # the watch has passed
        conn.execute(
            update(resume_requests)
            .where(resume_requests.c.request_id == req["request_id"])
            .values(approved_at=datetime.now(UTC) - timedelta(minutes=watch + 1))
        )
    api.registry.record_action(
        "dd.warn",
        actor="system:dd",
        role="system",
        reason="DD_WARN_PAIR",
        request_id="dd-1",
        before=None,
        after=None,
        result="ok",
        details={"pair_id": "BTC_ETH", "event": "warn"},
    )
    adv = f"/ops/resume/{req['request_id']}/advance"
    status, body = _post(api, "oscar", adv, {"reason": "watch over"})
    assert (status, body["code"]) == (409, "OPS_RESUME_CANARY_DRAWDOWN"), body
    assert _flags(api)["halted_pairs"] == ["EUR_GBP", "XAU_XAG"]


def test_the_rest_follows_after_a_quiet_watch(api: Api) -> None:
    _halted_book(api)
    req = _request(api, who="erin", pairs=PAIRS[1:])
    status, body = _approve(api, "oscar", req)
    assert body["canary_pairs"] == ["EUR_GBP"] and body["rest_pairs"] == ["XAU_XAG"]
    watch = api.cfg.runbook.resume_policy.kpi_watch_minutes
    with api.registry.engine.begin() as conn:
        conn.execute(
            update(resume_requests)
            .where(resume_requests.c.request_id == req["request_id"])
            .values(approved_at=datetime.now(UTC) - timedelta(minutes=watch + 1))
        )
    status, body = _post(
        api, "oscar", f"/ops/resume/{req['request_id']}/advance", {"reason": "watch over"}
    )
    assert status == 200 and body["status"] == "done", body
    assert _flags(api)["halted_pairs"] == ["BTC_ETH"]  # not asked for: still halted


def test_the_rest_step_does_not_lift_a_halt_of_a_new_incident(api: Api) -> None:
    _halted_book(api)
    req = _request(api, who="erin")
    assert _approve(api, "oscar", req)[0] == 200  # canary BTC_ETH; the rest stays halted
    status, body = _post(api, "eddie", "/ops/halt", {"level": "hard", "reason": "incident 8"})
    assert status == 200 and body["after"]["hard_halt"] is True  # a new book-wide hard halt
    watch = api.cfg.runbook.resume_policy.kpi_watch_minutes
    with api.registry.engine.begin() as conn:
        conn.execute(
            update(resume_requests)
            .where(resume_requests.c.request_id == req["request_id"])
            .values(approved_at=datetime.now(UTC) - timedelta(minutes=watch + 1))
        )
    adv = f"/ops/resume/{req['request_id']}/advance"
    status, body = _post(api, "oscar", adv, {"reason": "watch over"})
    assert (status, body["code"]) == (409, "OPS_RESUME_HALTED_AGAIN"), body
    status, body = _post(api, "ada", adv, {"reason": "second approval", "early": True})
    assert (status, body["code"]) == (409, "OPS_RESUME_HALTED_AGAIN"), body
    assert _flags(api)["hard_halt"] is True  # the new incident's halt stands
    assert _refused(api, "ops.resume.step", "OPS_RESUME_HALTED_AGAIN")


def test_an_approval_does_not_lift_a_halt_made_after_the_request(api: Api) -> None:
    _halted_book(api)
    req = _request(api, who="erin")  # about incident 7
    status, body = _post(api, "eddie", "/ops/flatten", {"pairs": ["XAU_XAG"], "reason": "inc 9"})
    assert status == 200  # a new incident's flatten latch, after the request
    status, body = _approve(api, "oscar", req)
    assert (status, body["code"]) == (409, "OPS_RESUME_HALTED_AGAIN"), body
    assert _flags(api)["global_halt"] is True and _flags(api)["flatten_pairs"] == ["XAU_XAG"]
    named = _request(api, who="erin", pairs=["EUR_GBP"])  # a halt of another pair after it
    assert _post(api, "eddie", "/ops/halt", {"level": "hard", "pairs": ["BTC_ETH"],
                                             "reason": "inc 10"})[0] == 200  # fmt: skip
    status, body = _approve(api, "oscar", named)
    assert status == 200 and body["canary_pairs"] == ["EUR_GBP"], body
    assert _refused(api, "ops.resume.approve", "OPS_RESUME_HALTED_AGAIN")
