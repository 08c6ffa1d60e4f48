"""`mlcore api user|token`: a token printed once and stored only as its sha256, a TOTP URI for
approvers and admins only, revocation by id, a list without secrets; refusals in one line
(exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from mlcore.api import Users, token_sha256
from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.registry import registry_for
from mlcore.registry._tables import api_tokens
from tests.conftest import CONFIG_ROOT

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--config-root", str(CONFIG_ROOT)])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_users_and_tokens(cfg: AppConfig, archive: Path) -> None:
    code, out = _run("api", "user", "add", "eddie", "--role", "editor", "--duty", "ops")
    assert code == 0 and "otpauth://" not in out, out
    code, out = _run("api", "user", "add", "rita", "--role", "approver", "--duty", "risk")
    assert code == 0 and "otpauth://totp/mlcore-ops:rita?secret=" in out
    code, out = _run("api", "token", "issue", "eddie")
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    token_id = out.split()[1]
    reg = registry_for(cfg)
    with reg.engine.connect() as conn:
        stored = list(conn.execute(select(api_tokens)))
    assert [r.token_sha256 for r in stored] == [token_sha256(token)]
    assert token not in str([tuple(r) for r in stored])
    users = Users(reg.engine)
    assert users.by_token(token)[0].name == "eddie"  # type: ignore[union-attr]
    code, out = _run("api", "user", "list")
    assert code == 0 and "eddie" in out and "rita" in out and token not in out
    assert "secret" not in out
    assert _run("api", "token", "revoke", token_id)[0] == 0
    assert users.by_token(token) == (users.get("eddie"), True)
    code, out = _run("api", "token", "revoke", token_id)
    assert code == 2 and "API_USER_REFUSED" in out and "Traceback" not in out


def test_refusals_are_one_line(cfg: AppConfig, archive: Path) -> None:
    assert _run("api", "user", "add", "ann", "--role", "viewer")[0] == 0
    for args, code_name in (
        (("api", "user", "add", "ann", "--role", "viewer"), "API_USER_REFUSED"),
        (("api", "user", "add", "Bad Name", "--role", "viewer"), "API_USER_REFUSED"),
        (("api", "user", "add", "bob", "--role", "root"), "CLI_ARGUMENT_INVALID"),
        (
            ("api", "user", "add", "bob", "--role", "viewer", "--duty", "cfo"),
            "CLI_ARGUMENT_INVALID",
        ),
        (("api", "token", "issue", "nobody"), "API_USER_REFUSED"),
    ):
        code, out = _run(*args)
        assert code == 2 and code_name in out and "Traceback" not in out, (args, out)
