"""The audit trail on both databases (SQLite, the embedded default, and this machine's
PostgreSQL): append-only (triggers refuse UPDATE and DELETE), hash-chained (``mlcore audit
verify`` names a changed, removed or reordered row), serialised appends (concurrent writers
never fork the chain), and ``mlcore audit at`` answering what was in force at a time."""

# ruff: noqa: S608 - the SQL here is this test's own, its table names constants

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.registry import (
    ActionResult,
    AuditEvent,
    Break,
    Registry,
    RegistryError,
    make_engine,
    open_registry,
)
from tests.conftest import CONFIG_ROOT, make_version, postgres_url

CHANGES, ACTIONS = "audit.config_changes", "audit.analytics_actions"
FLAGS_OFF = {"global_halt": False, "halted_pairs": [], "leverage_scale": 1.0, "seq": 1}
FLAGS_ON = {"global_halt": True, "halted_pairs": [], "leverage_scale": 0.5, "seq": 2}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A registry database, also the one `mlcore audit` opens through its configuration."""
    monkeypatch.setenv("MLCORE_CONFIG_ROOT", str(CONFIG_ROOT))
    if request.param == "sqlite":
        monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path))
        yield f"sqlite:///{tmp_path / 'registry' / 'registry.db'}"
    else:
        monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
        for found in postgres_url():
            monkeypatch.setenv("POSTGRES_URL", found.replace("+psycopg", ""))
            yield found


def _cli(*args: str) -> tuple[int, list[str]]:
    """Exit code and lines printed (the JSON log lines left out, unless --json asked)."""
    result = CliRunner().invoke(app, ["audit", *args])
    assert "Traceback" not in result.output
    if "--json" in args:
        return result.exit_code, result.stdout.splitlines()
    return result.exit_code, [ln for ln in result.output.splitlines() if not ln.startswith("{")]


def _halt(reg: Registry, actor: str = "alice", result: ActionResult = ActionResult.OK) -> int:
    return reg.record_action(
        "ops.halt", actor=actor, role="editor", reason="news spike", request_id="req-1",
        before=FLAGS_OFF, after=FLAGS_ON, result=result, details={"level": "soft"},
    )  # fmt: skip


def _history(reg: Registry, tmp_path: Path) -> str:
    """A version registered and deployed with θ, a flags change, a config applied."""
    v = make_version(tmp_path / "models", "20250101_0000_abc1234").name
    reg.register(tmp_path / "models" / v, actor="ci", notes="trained", theta=(0.7, 0.3))
    reg.transition(v, "candidate", actor="ci", notes="backtest passed")
    reg.transition(v, "approved", actor="ops", notes="gates passed", theta=(0.72, 0.28))
    reg.transition(v, "deployed", actor="ops", notes="first deployment")
    _halt(reg)
    reg.record_config_event(
        AuditEvent.CONFIG_APPLIED, actor="carol", notes="apply PR 3",
        details={"git_sha": "a" * 40, "rendered_sha256": "b" * 64},
    )  # fmt: skip
    return v


def _superuser(reg: Registry, table: str, *statements: str) -> None:
    """As a superuser would: drop the table's append-only triggers, run ``statements``, put
    the triggers back as they were."""
    pg = reg.engine.dialect.name == "postgresql"
    with reg.engine.begin() as conn:
        if pg:
            found = conn.execute(
                text("SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                     "WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal"),
                {"t": f"audit.{table}"},
            ).all()  # fmt: skip
        else:
            found = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND "
                     "tbl_name = :t"),
                {"t": table},
            ).all()  # fmt: skip
        assert len(found) >= 2
        for name, _ in found:
            conn.execute(text(f"DROP TRIGGER {name}" + (f" ON audit.{table}" if pg else "")))
        for sql in statements:
            conn.execute(text(sql.replace("{t}", f"audit.{table}" if pg else table)))
        for _, definition in found:
            conn.execute(text(definition))


def test_intact_chain_verifies_on_the_command_line(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    _history(reg, tmp_path)
    report = reg.verify_audit()
    assert report.intact and report.rows == {ACTIONS: 1, CHANGES: 5}
    code, lines = _cli("verify")
    assert code == 0 and lines[0] == (
        "audit chain intact: 1 rows in analytics_actions, 5 in config_changes"
    )
    head = report.heads[CHANGES]
    assert head[0] == 5 and f"head of {CHANGES}: row 5 {head[1]}" in lines
    assert _cli("verify", "--head", str(head[1]))[0] == 0
    assert _cli("verify", "--head", "abc") == (2, [
        "error AUDIT_REQUEST_HEAD_INVALID: --head 'abc' is not a row hash (64 hex digits, as "
        "`audit verify` prints)"
    ])  # fmt: skip
    rows = reg.history()
    assert [r.change_id for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].details and rows[0].details["theta"] == [0.7, 0.3]


@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
def test_update_and_delete_are_refused_by_the_database(url: str, tmp_path: Path, verb: str) -> None:
    reg = open_registry(url)
    _history(reg, tmp_path)
    pg = url.startswith("postgresql")
    for table in ("config_changes", "analytics_actions"):
        where = f"audit.{table}" if pg else table
        sql = (
            f"UPDATE {where} SET actor = 'mallory'" if verb == "UPDATE" else f"DELETE FROM {where}"
        )
        with pytest.raises(
            sqlalchemy.exc.DBAPIError, match=f"audit.{table} is append-only: {verb} refused"
        ):
            with reg.engine.begin() as conn:
                conn.execute(text(sql))
    if pg:
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only: TRUNCATE refused"):
            with reg.engine.begin() as conn:
                conn.execute(text("TRUNCATE audit.config_changes"))
    assert reg.verify_audit().rows == {ACTIONS: 1, CHANGES: 5}
    assert {r.actor for r in reg.history()} == {"ci", "ops", "carol"}


def test_a_flipped_byte_is_found_and_its_row_named(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    _history(reg, tmp_path)
    _halt(reg, actor="bob")
    # One character of a note, one digit inside a JSON document: the rows keep their hashes.
    _superuser(reg, "config_changes", "UPDATE {t} SET notes = 'gates pa5sed' WHERE change_id = 3")
    json_text = "details::text" if url.startswith("postgresql") else "details"
    cast = "CAST(replace({j}, '0.28', '0.29') AS json)" if url.startswith("postgresql") else \
        "replace({j}, '0.28', '0.29')"  # fmt: skip
    flip = f"UPDATE {{t}} SET details = {cast.format(j=json_text)} WHERE change_id = 3"
    _superuser(reg, "config_changes", flip)
    _superuser(reg, "analytics_actions", "UPDATE {t} SET actor = 'bOb' WHERE action_id = 2")
    report = reg.verify_audit()
    assert report.as_json()["breaks"][0]["line"] == (
        "row 2 of audit.analytics_actions: its content does not match its hash"
    )
    assert report.breaks == [
        Break(ACTIONS, 2, "its content does not match its hash"),
        Break(CHANGES, 3, "its content does not match its hash"),
    ]
    code, lines = _cli("verify")
    assert code == 1
    assert lines[:2] == [
        "row 2 of audit.analytics_actions: its content does not match its hash",
        "row 3 of audit.config_changes: its content does not match its hash",
    ]
    assert lines[2].startswith("error AUDIT_CHAIN_BROKEN: 2 broken link(s) in the audit chain")


def test_a_removed_row_and_a_rehashed_row_are_found(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    _history(reg, tmp_path)
    _superuser(reg, "config_changes", "DELETE FROM {t} WHERE change_id = 2")
    assert reg.verify_audit().breaks == [
        Break(CHANGES, 3, "prev_hash does not match row 1's hash (a row was removed or reordered)")
    ]
    # The newest row removed: its hash, kept elsewhere, is no longer found.
    kept = reg.verify_audit().heads[ACTIONS][1]
    assert kept is not None
    _superuser(reg, "analytics_actions", "DELETE FROM {t} WHERE action_id = 1")
    report = reg.verify_audit([kept])
    assert report.rows == {ACTIONS: 0, CHANGES: 4} and report.heads_missing == [kept]
    code, lines = _cli("verify", "--head", kept)
    assert code == 1 and lines[:2] == [
        "row 3 of audit.config_changes: prev_hash does not match row 1's hash (a row was "
        "removed or reordered)",
        f"head {kept}: no longer in the chain (rows after it were removed or rewritten)",
    ]
    assert lines[2].startswith("error AUDIT_CHAIN_BROKEN: 2 broken link(s)")


def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(
    url: str, tmp_path: Path
) -> None:
    from mlcore.registry._chain import row_hash

    reg = open_registry(url)
    _history(reg, tmp_path)
    row = {k: v for k, v in reg.history()[2].as_dict().items()}
    with reg.engine.connect() as conn:
        where = "audit.config_changes" if url.startswith("postgresql") else "config_changes"
        stored = dict(conn.execute(text(f"SELECT prev_hash, row_hash FROM {where} "
                                        "WHERE change_id = 3")).one()._mapping)  # fmt: skip
    row |= {"notes": "forged", "prev_hash": stored["prev_hash"],
            "old_status": str(row["old_status"]), "new_status": str(row["new_status"])}  # fmt: skip
    forged = row_hash(row)
    forge = f"UPDATE {{t}} SET notes = 'forged', row_hash = '{forged}' WHERE change_id = 3"
    _superuser(reg, "config_changes", forge)
    assert reg.verify_audit().breaks == [
        Break(CHANGES, 4, "prev_hash does not match row 3's hash (a row was removed or reordered)")
    ]


def test_hostile_values_are_refused_and_nothing_is_written(url: str) -> None:
    reg = open_registry(url)
    bad = [
        {"after": {"leverage_scale": float("nan")}}, {"reason": "a\x00b"}, {"actor": " "},
        {"details": {"pairs": {"EUR_USD", 1}}}, {"details": {"when": datetime.now(UTC)}},
        {"result": "maybe"}, {"action": "x" * 65},
        {"before": ["not", "a", "mapping"]}, {"reason": "\ud800"}, {"actor": "a" * 201},
    ]  # fmt: skip
    for change in bad:
        kw = dict(actor="alice", role="editor", reason="r", request_id="q", before=None,
                  after=None, result=ActionResult.OK) | change  # fmt: skip
        with pytest.raises(RegistryError, match=r"^not recorded: ") as caught:
            reg.record_action(str(kw.pop("action", "ops.halt")), **kw)  # type: ignore[arg-type]
        assert caught.value.code == "AUDIT_REQUEST_VALUE_INVALID"
    with pytest.raises(RegistryError, match="event 'CONFIG_BOGUS' is not one of"):
        reg.record_config_event("CONFIG_BOGUS", actor="a", notes="n")  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="needs notes"):
        reg.record_config_event(AuditEvent.CONFIG_MERGED, actor="a", notes=" ")
    assert reg.verify_audit().rows == {ACTIONS: 0, CHANGES: 0}
    # A config state that is not a model status is kept as it is (and read back).
    reg.record_config_event(AuditEvent.CONFIG_MERGED, actor="a", notes="merged",
                            old_status="approved", new_status="merged")  # fmt: skip
    assert (reg.history()[0].old_status, reg.history()[0].new_status) == ("approved", "merged")


def _append_many(url: str, worker: int, count: int, barrier: mp.synchronize.Barrier) -> None:
    reg = open_registry(url)
    barrier.wait()
    for i in range(count):
        if i % 2:
            reg.record_config_event(AuditEvent.CONFIG_VALIDATED, actor=f"w{worker}",
                                    notes=f"change {i}")  # fmt: skip
        else:
            _halt(reg, actor=f"w{worker}")


def test_concurrent_writers_do_not_fork_the_chain(url: str) -> None:
    open_registry(url)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_append_many, args=(url, w, 30, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    report = open_registry(url).verify_audit()
    assert report.breaks == [] and report.rows == {ACTIONS: 60, CHANGES: 60}


def test_the_migration_chains_rows_written_before_it(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for schema in ("core", "audit"):
                conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("mlcore.registry") / "migrations")
        )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        table = "audit.config_changes" if conn.dialect.name == "postgresql" else "config_changes"
        for i in range(3):
            conn.execute(
                text(f"INSERT INTO {table} (changed_at, actor, event, notes, details) VALUES "
                     "(:at, 'old', 'MODEL_STATUS', :n, :d)"),
                {"at": datetime(2025, 1, 1 + i, tzinfo=UTC), "n": f"legacy {i}",
                 "d": json.dumps({"theta": [0.7, 0.3 + i / 10]})},
            )  # fmt: skip
    engine.dispose()
    reg = open_registry(url)
    assert reg.verify_audit().rows[CHANGES] == 3 and reg.verify_audit().intact
    reg.record_config_event(AuditEvent.CONFIG_VALIDATED, actor="new", notes="after migration")
    assert reg.verify_audit().intact and [r.change_id for r in reg.history()] == [1, 2, 3, 4]


def test_audit_at_says_what_was_in_force_and_who_changed_it(url: str, tmp_path: Path) -> None:
    reg = open_registry(url)
    before = datetime.now(UTC)
    time.sleep(0.01)
    v = _history(reg, tmp_path)
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    reg.record_config_event(AuditEvent.THETA_ROLLBACK, actor="dave", notes="θ back",
                            model_version=v, details={"theta": [0.7, 0.3]})  # fmt: skip
    _halt(reg, actor="erin", result=ActionResult.DENIED)  # refused: flags unchanged
    empty = reg.state_at(before)
    assert (empty.model_version, empty.theta, empty.config, empty.flags) == (None, None, None, None)
    then = reg.state_at(middle)
    assert then.model_version == v and then.model_changed and then.model_changed.by == "ops"
    assert then.theta == (0.72, 0.28) and then.theta_changed and then.theta_changed.by == "ops"
    assert then.config and then.config.git_sha == "a" * 40
    assert then.flags == FLAGS_ON and then.flags_changed
    assert then.flags_changed.by == "alice (editor, ops.halt)"
    now = reg.state_at(datetime.now(UTC))
    assert now.theta == (0.7, 0.3) and now.theta_changed and now.theta_changed.by == "dave"
    code, lines = _cli("at", middle.isoformat())
    assert code == 0 and lines[1].startswith(f"model version: {v} (by ops at ")
    assert lines[2].startswith("θ: θ1=0.7200, θ2=0.2800 (by ops at ")
    assert lines[3].startswith(f"config version: git {'a' * 40}, rendered sha256 {'b' * 64}")
    assert lines[4].startswith("flags: {") and "alice (editor, ops.halt)" in lines[4]
    code, lines = _cli("at", middle.isoformat(), "--json")
    doc = json.loads("".join(lines))
    assert code == 0 and doc["model_version"] == v and doc["theta"] == [0.72, 0.28]
    assert doc["flags"] == FLAGS_ON and doc["config_changed"]["by"] == "carol"
    code, lines = _cli("at", "yesterday")
    assert code == 2 and lines == ["error AUDIT_REQUEST_TIMESTAMP_INVALID: TIMESTAMP 'yesterday' "
                                   "is not an ISO 8601 time (e.g. 2026-01-31T09:30:00Z or "
                                   "2026-01-31; no offset means UTC)"]  # fmt: skip


def test_a_row_edited_into_unreadable_json_is_named(tmp_path: Path) -> None:
    """SQLite keeps JSON as text: a superuser can write text that is not JSON at all."""
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    _history(reg, tmp_path)
    _superuser(reg, "config_changes", "UPDATE {t} SET details = '{not json' WHERE change_id = 2")
    report = reg.verify_audit()
    assert report.rows == {ACTIONS: 1, CHANGES: 5}
    assert [(b.row_id, b.problem.split(" (")[0]) for b in report.breaks] == [
        (2, "its content cannot be read")
    ]
