"""/configs/* and /audit/* through the live API on a workspace whose configs/ is a git
repository: validate, pr, approve, merge, apply, rollback (also as /ops/rollback kind config),
each audited as configs.<verb> with the request id beside the governance part's own rows; a
refusal named and audited; the audit chain intact after it all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcore.config import init_workspace, load_config
from mlcore.governance import open_repo
from mlcore.governance._git import MAIN
from tests.conftest import CONFIG_ROOT
from tests.integration._api_support import Api, client, live_api

HEARTBEAT = "heartbeat_seconds:\n  value: 30\n  description: Beat faster.\n"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    init_workspace(tmp_path / "ws", CONFIG_ROOT)
    with live_api(load_config(tmp_path / "ws" / "configs", "dev")) as live:
        yield live


def _post(api: Api, who: str, path: str, body: dict[str, Any], rid: str) -> tuple[int, dict]:
    with client(api) as http:
        resp = http.post(path, json=body, headers=api.headers(who, rid=rid))
    return resp.status_code, resp.json()


def test_a_config_change_from_pr_to_applied_to_rolled_back(api: Api) -> None:
    git, _store, _names = open_repo(api.cfg)  # the repository, made on first use
    initial = git.resolve(MAIN)
    status, body = _post(api, "oscar", "/configs/apply", {"sha": initial, "reason": "v0"}, "v0")
    assert status == 200, body
    files = {"files": {"retrain_policy.yaml": HEARTBEAT}}
    status, body = _post(api, "eddie", "/configs/validate", files, "v1")
    assert status == 200 and body["result"]["ok"] is True, body
    status, body = _post(api, "eddie", "/configs/pr", {**files, "reason": "faster"}, "p1")
    assert status == 200, body
    change = body["result"]["change_id"]
    status, body = _post(
        api, "oscar", "/configs/approve", {"change_id": "nope", "reason": "x"}, "a0"
    )
    assert (status, body["code"]) == (404, "CONFIG_GOV_CHANGE_NOT_FOUND"), body
    for verb, who in (("approve", "oscar"), ("merge", "rita"), ("apply", "rita")):
        status, body = _post(
            api, who, f"/configs/{verb}", {"change_id": change, "reason": f"{verb} it"}, f"{verb}1"
        )
        assert status == 200, (verb, body)
    applied = body["result"]["sha"]
    assert (api.cfg.config_root / "retrain_policy.yaml").read_text() == HEARTBEAT
    status, body = _post(api, "ada", "/ops/rollback", {"kind": "config", "reason": "chatty"}, "rb1")
    assert status == 200 and body["after"]["sha"] not in (applied, initial), body
    assert not (api.cfg.config_root / "retrain_policy.yaml").exists()
    rows = {a.request_id: a for a in api.registry.actions()}
    assert rows["p1"].action == "configs.pr" and rows["p1"].actor == "eddie"
    assert rows["a0"].result == "refused" and rows["a0"].details["code"] == (
        "CONFIG_GOV_CHANGE_NOT_FOUND"
    )
    assert rows["apply1"].role == "approver" and rows["rb1"].action == "ops.rollback"
    with client(api) as http:
        verify = http.get("/audit/verify", headers=api.headers("vic")).json()
    assert verify["intact"] is True and verify["rows"]["audit.config_changes"] >= 6
