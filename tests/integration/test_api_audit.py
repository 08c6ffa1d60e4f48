"""/audit/verify and /audit/at through the live API: after a halt, the chains are intact and
the state at now holds the flags and who set them; a changed row is named; a time without
its zone is refused naming the query field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.integration._api_support import Api, api_config, client, live_api


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    with live_api(api_config(tmp_path, monkeypatch)) as live:
        yield live


def test_verify_and_at_after_a_halt(api: Api) -> None:
    with client(api) as http:
        resp = http.post(
            "/ops/halt",
            headers=api.headers("eddie"),
            json={"level": "soft", "pairs": ["EUR_GBP"], "reason": "drill"},
        )
        assert resp.status_code == 200
        verify = http.get("/audit/verify", headers=api.headers("vic")).json()
        assert verify["intact"] is True and verify["rows"]["audit.analytics_actions"] >= 1
        state = http.get(
            "/audit/at", params={"ts": datetime.now(UTC).isoformat()}, headers=api.headers("vic")
        ).json()
        assert state["flags"]["halted_pairs"] == ["EUR_GBP"], state
        assert state["flags_changed"]["by"] == "eddie (editor, ops.halt)"
        naive = http.get(
            "/audit/at", params={"ts": "2026-01-01T00:00:00"}, headers=api.headers("vic")
        )
        assert (naive.status_code, naive.json()["field"]) == (422, "query.ts")
        bad = http.get("/audit/verify", params={"head": "x"}, headers=api.headers("vic"))
        assert (bad.status_code, bad.json()["field"]) == (422, "query.head[0]")
        # SQLite's triggers refuse UPDATE; a person with the file drops them and edits a row.
        with api.registry.engine.begin() as conn:
            names = [
                r[0]
                for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='trigger'"))
            ]
            for name in names:
                conn.execute(text(f"DROP TRIGGER {name}"))
            conn.execute(text("UPDATE analytics_actions SET reason = 'nothing happened'"))
        verify = http.get("/audit/verify", headers=api.headers("vic")).json()
        assert verify["intact"] is False and verify["breaks"], verify
