"""A version its backtest rejected goes to approved or deployed only with ``--override --reason``:
refused in one line without them, and the override is audited (who, when, why) in the registry's
audit table, on SQLite and on PostgreSQL. ``registry show`` names θ as the backtest adopted it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig, load_config
from mlcore.registry import registry_for
from mlcore.registry._tables import config_changes
from tests.conftest import CONFIG_ROOT, make_version, postgres_url

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
V = "20250101_0000_abc1234"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, *ROOT])
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, archive: Path, monkeypatch) -> Iterator[AppConfig]:
    if request.param == "postgresql":
        for url in postgres_url():
            monkeypatch.setenv("POSTGRES_URL", url)
            yield load_config(CONFIG_ROOT, "dev")
    else:
        yield load_config(CONFIG_ROOT, "dev")


def _rejected(cfg: AppConfig, decision: str = "reject") -> None:
    make_version(cfg.paths.models, V)
    record = cfg.paths.reports / "backtest" / V / "backtest.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"decision": decision, "theta": {"adopted": [0.61, 0.42]}}))
    assert _run("registry", "register", "--model", V, "--notes", "n")[0] == 0
    assert _run("registry", "promote", V, "--to", "candidate", "--notes", "n")[0] == 0


def _said_once(out: str, code: str) -> None:
    assert "Traceback" not in out and code in out, out
    said = [x for x in out.splitlines() if x.strip() and not x.startswith("{")]
    assert len(said) == 1, out


def test_a_rejected_version_is_promoted_only_with_an_audited_override(
    backend: AppConfig,
) -> None:
    cfg = backend
    _rejected(cfg)
    code, out = _run("registry", "promote", V, "--to", "approved", "--notes", "n")
    assert code == 2, out
    _said_once(out, "REGISTRY_PROMOTION_BACKTEST_REJECTED")
    assert "--override --reason" in out
    code, out = _run("registry", "promote", V, "--to", "approved", "--notes", "n", "--override")
    assert code == 2, out
    _said_once(out, "REGISTRY_PROMOTION_REASON_MISSING")
    assert registry_for(cfg).get(V).status == "candidate"
    why = "gate noise on a short test window"
    code, out = _run("registry", "promote", V, "--to", "approved", "--notes", "n", "--override",
                     "--reason", why, "--actor", "alice")  # fmt: skip
    assert code == 0, out
    assert "OVERRIDE" in out and registry_for(cfg).get(V).status == "approved"
    reg = registry_for(cfg)
    with reg.engine.begin() as conn:
        rows = conn.execute(
            select(config_changes).where(config_changes.c.model_version == V)
            .order_by(config_changes.c.change_id)
        ).mappings().all()  # fmt: skip
    last = rows[-1]
    assert (last["actor"], last["new_status"]) == ("alice", "approved")
    assert last["changed_at"] is not None
    assert last["details"]["override"] == {
        "backtest_decision": "reject", "reason": why,
    }  # fmt: skip
    code, out = _run("registry", "show", V)
    assert code == 0 and "θ adopted by its backtest: θ1=0.6100, θ2=0.4200" in out, out


def test_an_override_needs_a_rejection_to_override(archive: Path, cfg: AppConfig) -> None:
    _rejected(cfg, decision="adopt")
    code, out = _run("registry", "promote", V, "--to", "approved", "--notes", "n", "--override",
                     "--reason", "why")  # fmt: skip
    assert code == 2, out
    _said_once(out, "REGISTRY_PROMOTION_NOTHING_TO_OVERRIDE")
    assert _run("registry", "promote", V, "--to", "approved", "--notes", "n")[0] == 0
