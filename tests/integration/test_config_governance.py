"""Governed configuration on a real workspace and git repository, with the registry on the
embedded SQLite and on this machine's PostgreSQL: validate, pr, approve, merge, apply and
rollback, each transition an audit row, and the refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mlcore.config import AppConfig, init_workspace, load_config
from mlcore.errors import ConfigError
from mlcore.governance import (
    ChangeState,
    GovernanceError,
    Risk,
    apply,
    approve,
    config_in_force,
    create_pr,
    merge,
    open_repo,
    render,
    require_in_force,
    rollback_config,
    validate_change,
)
from mlcore.governance._git import MAIN, Git
from mlcore.registry import Registry, open_registry
from mlcore.registry._tables import config_changes
from tests.conftest import CONFIG_ROOT, make_version, postgres_url

HEARTBEAT = b"heartbeat_seconds:\n  value: 30\n  description: Beat faster.\n"
DD = b"portfolio:\n  value: {warn: 0.07, halt: 0.09, flatten: 0.11}\n  description: Tighter.\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "sqlite":
        yield open_registry(f"sqlite:///{tmp_path / 'registry' / 'registry.db'}")
    else:
        for url in postgres_url():
            reg = open_registry(url)
            yield reg
            reg.engine.dispose()


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Registry:
    return open_registry(f"sqlite:///{tmp_path / 'registry' / 'registry.db'}")


@pytest.fixture
def cfg(tmp_path: Path) -> AppConfig:
    init_workspace(tmp_path / "ws", CONFIG_ROOT)
    return load_config(tmp_path / "ws" / "configs", "dev")


def _rows(registry: Registry) -> list[Any]:
    """The audit.config_changes rows, oldest first (read raw: their statuses are a config
    change's, not a model version's)."""
    with registry.engine.connect() as conn:
        return list(conn.execute(select(config_changes).order_by(config_changes.c.change_id)))


def _events(registry: Registry) -> list[tuple[str, str | None, str | None]]:
    return [(c.event, c.old_status, c.new_status) for c in _rows(registry)]


def _approved(cfg: AppConfig, files: dict[str, bytes], reg: Registry, reason: str) -> str:
    rec = create_pr(cfg, files, actor="alice", role="editor", reason=reason, registry=reg)
    for who in ("bob", "carol")[: rec.approvals_needed]:
        approve(cfg, rec.change_id, actor=who, role="approver", registry=reg)
    return rec.change_id


def test_the_whole_path_draft_to_applied_then_rolled_back_byte_identical(
    cfg: AppConfig, registry: Registry
) -> None:
    folder = cfg.config_root
    report = validate_change(cfg, {"retrain_policy.yaml": HEARTBEAT})
    assert report.ok, report.problems
    assert report.risk == Risk.MEDIUM
    assert report.changes[0].keys == ("heartbeat_seconds",)
    git = Git(folder)
    initial = git.resolve(MAIN)
    assert initial is not None
    v0 = apply(cfg, sha=initial, actor="bob", role="approver", registry=registry)
    rendered0 = render(load_config(folder, "dev"))

    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="editor",
                    reason="faster heartbeat", registry=registry)  # fmt: skip
    assert rec.state == ChangeState.PR_CREATED
    assert git.resolve(f"refs/heads/{rec.branch}") == rec.head_sha
    assert not (folder / "retrain_policy.yaml").exists()  # a pr changes nothing in force
    rec = approve(cfg, rec.change_id, actor="bob", role="approver", registry=registry)
    assert rec.state == ChangeState.APPROVED
    rec = merge(cfg, rec.change_id, actor="bob", role="approver", registry=registry)
    assert rec.state == ChangeState.MERGED
    assert git.resolve(MAIN) == rec.head_sha  # fast-forward
    assert load_config(folder, "dev").retrain.heartbeat_seconds == 60  # merged, not applied
    v1 = apply(cfg, rec.change_id, actor="bob", role="approver", registry=registry)
    assert (folder / "retrain_policy.yaml").read_bytes() == HEARTBEAT
    applied_cfg = load_config(folder, "dev")
    assert applied_cfg.retrain.heartbeat_seconds == 30
    assert config_in_force(cfg) == v1 == require_in_force(cfg)
    assert v1.sha == rec.head_sha and v1.rendered_sha256 != v0.rendered_sha256

    back = rollback_config(cfg, actor="bob", role="approver", reason="too chatty",
                           registry=registry)  # fmt: skip
    assert render(load_config(folder, "dev")) == rendered0  # byte for byte
    assert back.rendered_sha256 == v0.rendered_sha256
    tree = git.out("rev-parse", f"{initial}^{{tree}}")
    assert git.out("rev-parse", f"{back.sha}^{{tree}}") == tree
    assert git.out("rev-parse", f"{back.sha}^") == v1.sha  # a revert commit on top of main
    assert not (folder / "retrain_policy.yaml").exists()
    assert config_in_force(cfg) == back
    assert _events(registry) == [
        ("CONFIG_APPLIED", None, "applied"),
        ("CONFIG_VALIDATED", None, "draft"),
        ("CONFIG_PR_CREATED", "draft", "pr_created"),
        ("CONFIG_APPROVED", "pr_created", "approved"),
        ("CONFIG_MERGED", "approved", "merged"),
        ("CONFIG_APPLIED", "merged", "applied"),
        ("CONFIG_ROLLBACK", "applied", "rolled_back"),
    ]
    last = _rows(registry)[-1]
    assert last.actor == "bob" and last.notes == "too chatty"
    assert last.details is not None and last.details["identical"] is True
    assert registry.verify_audit().intact  # every row on the audit's hash chain
    # `mlcore audit at`: the version in force after the apply, then after the rollback.
    rows = _rows(registry)
    applied_at, rolled_at = rows[-2].changed_at, rows[-1].changed_at
    at_apply = registry.state_at(applied_at).config
    assert at_apply is not None and at_apply.git_sha == v1.sha
    assert at_apply.rendered_sha256 == v1.rendered_sha256
    at_rollback = registry.state_at(rolled_at).config
    assert at_rollback is not None and at_rollback.git_sha == back.sha
    assert at_rollback.rendered_sha256 == v0.rendered_sha256


def test_a_high_risk_change_needs_two_distinct_approvers(
    cfg: AppConfig, registry: Registry
) -> None:
    rec = create_pr(cfg, {"dd_policy.yaml": DD}, actor="alice", role="editor",
                    reason="tighter drawdown", registry=registry)  # fmt: skip
    assert rec.risk == "high" and rec.approvals_needed == 2
    rec = approve(cfg, rec.change_id, actor="bob", role="approver", registry=registry)
    assert rec.state == ChangeState.PR_CREATED and rec.approvers == ("bob",)
    with pytest.raises(GovernanceError, match=r"bob approved change .* already") as again:
        approve(cfg, rec.change_id, actor="bob", role="admin", registry=registry)
    assert again.value.code == "CONFIG_GOV_ALREADY_APPROVED"
    with pytest.raises(GovernanceError, match="is pr_created: merge needs a change that is "
                       "approved"):  # fmt: skip
        merge(cfg, rec.change_id, actor="bob", role="approver", registry=registry)
    rec = approve(cfg, rec.change_id, actor="carol", role="admin", registry=registry)
    assert rec.state == ChangeState.APPROVED and rec.approvers == ("bob", "carol")
    merge(cfg, rec.change_id, actor="carol", role="approver", registry=registry)
    apply(cfg, rec.change_id, actor="carol", role="approver", registry=registry)
    assert load_config(cfg.config_root, "dev").drawdown.portfolio.warn == 0.07
    approvals = [c for c in _rows(registry) if c.event == "CONFIG_APPROVED"]
    assert [(c.actor, c.new_status) for c in approvals] == [
        ("bob", "pr_created"), ("carol", "approved"),
    ]  # fmt: skip


def test_self_approval_and_roles_below_the_verb_are_refused(
    cfg: AppConfig, sqlite_registry: Registry
) -> None:
    reg = sqlite_registry
    with pytest.raises(GovernanceError, match="pr needs the editor role") as low:
        create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="vic", role="viewer",
                  reason="x", registry=reg)  # fmt: skip
    assert low.value.code == "CONFIG_GOV_ROLE_DENIED"
    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="approver",
                    reason="x", registry=reg)  # fmt: skip
    with pytest.raises(GovernanceError, match=r"alice wrote change .* may not approve") as own:
        approve(cfg, rec.change_id, actor="alice", role="admin", registry=reg)
    assert own.value.code == "CONFIG_GOV_SELF_APPROVAL"
    with pytest.raises(GovernanceError, match="approve needs the approver role"):
        approve(cfg, rec.change_id, actor="eve", role="editor", registry=reg)
    with pytest.raises(GovernanceError, match="role 'root' is not one of"):
        approve(cfg, rec.change_id, actor="eve", role="root", registry=reg)
    with pytest.raises(GovernanceError, match="actor") as bad_actor:
        approve(cfg, rec.change_id, actor="eve\nforged", role="approver", registry=reg)
    assert bad_actor.value.code == "CONFIG_GOV_ACTOR_INVALID"
    with pytest.raises(GovernanceError, match=r"no config change '\.\./x'"):
        approve(cfg, "../x", actor="bob", role="approver", registry=reg)
    assert [c.event for c in _rows(reg)] == ["CONFIG_VALIDATED", "CONFIG_PR_CREATED"]


def test_merge_and_apply_of_a_change_not_yet_approved_or_merged_are_refused(
    cfg: AppConfig, sqlite_registry: Registry
) -> None:
    reg = sqlite_registry
    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="editor",
                    reason="x", registry=reg)  # fmt: skip
    with pytest.raises(GovernanceError, match="is pr_created: merge needs a change that is "
                       "approved") as refused:  # fmt: skip
        merge(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    assert refused.value.code == "CONFIG_GOV_STATE_INVALID"
    with pytest.raises(GovernanceError, match="is pr_created: apply needs a change that is merged"):
        apply(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    assert Git(cfg.config_root).resolve(MAIN) == rec.base_sha


def test_merges_over_a_moved_main_and_refuses_a_conflicting_one(
    cfg: AppConfig, sqlite_registry: Registry
) -> None:
    reg = sqlite_registry
    first = _approved(cfg, {"retrain_policy.yaml": HEARTBEAT}, reg, "one")
    other = _approved(cfg, {"dd_policy.yaml": DD}, reg, "other file")
    clash = HEARTBEAT.replace(b"30", b"45")
    third = _approved(cfg, {"retrain_policy.yaml": clash}, reg, "same file")
    merge(cfg, first, actor="bob", role="approver", registry=reg)
    merged = merge(cfg, other, actor="bob", role="approver", registry=reg)
    git = Git(cfg.config_root)
    assert git.out("rev-list", "--parents", "-n", "1", MAIN).count(" ") == 2  # a merge commit
    assert set(git.files(merged.merged_sha or "")) >= {"retrain_policy.yaml", "dd_policy.yaml"}
    with pytest.raises(GovernanceError, match=r"main moved .* edits retrain_policy.yaml") as exc:
        merge(cfg, third, actor="bob", role="approver", registry=reg)
    assert exc.value.code == "CONFIG_GOV_MERGE_CONFLICT"
    assert git.resolve(MAIN) == merged.merged_sha


BAD_SCHEMA = {
    "retrain_policy.yaml": (b"heartbeat_sekonds:\n  value: 30\n", "heartbeat_sekonds"),
    "dd_policy.yaml": (b"portfolio:\n  value: {warn: lots}\n", "portfolio.warn"),
    "cost_table.yaml": (b"overrides:\n  value: {NOPE: {spread_bps: 1}}\n", "overrides"),
}


@pytest.mark.parametrize("name", sorted(BAD_SCHEMA))
def test_a_change_failing_the_schema_is_refused_at_validate_and_at_pr(
    cfg: AppConfig, sqlite_registry: Registry, name: str
) -> None:
    body, key = BAD_SCHEMA[name]
    report = validate_change(cfg, {name: body})
    assert not report.ok
    assert report.problems[0].file == name
    assert key in report.problems[0].message and name in report.problems[0].message
    with pytest.raises(ConfigError, match=key) as exc:
        create_pr(cfg, {name: body}, actor="alice", role="editor", reason="x",
                  registry=sqlite_registry)  # fmt: skip
    assert exc.value.code == "CONFIG_GOV_INVALID"
    assert _rows(sqlite_registry) == []
    assert Git(cfg.config_root).out("branch", "--list", "config/*") == ""


# A billion laughs: nine levels of nine aliases each (9**9 strings once expanded).
BOMB = b'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + b"".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n".encode() for i in range(1, 9)
)
HOSTILE = {
    "bomb": ("universe.yaml", BOMB, "anchors and aliases"),
    "huge": ("universe.yaml", b"# " + b"x" * 300_000 + b"\n", "300,003 bytes"),
    "binary": ("universe.yaml", b"pairs:\xff\xfe\n", "not UTF-8"),
    "traversal": ("../../etc/passwd", b"root: x\n", "'../../etc/passwd' is a path"),
    "git config": (".git/config", b"[core]\n", "'.git/config' is a path"),
    "not a policy": ("secrets.yaml", b"a: {value: 1}\n", "'secrets.yaml' is not one of"),
    "a list": ("universe.yaml", b"- 1\n- 2\n", "top level must be a mapping"),
    "deep": ("universe.yaml", b"a: " + b"[" * 50_000 + b"]" * 50_000, "deeper than 32 levels"),
    "nul": ("universe.yaml", b"pairs:\x00\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_refused_naming_it(
    cfg: AppConfig, sqlite_registry: Registry, case: str
) -> None:
    name, body, said = HOSTILE[case]
    report = validate_change(cfg, {name: body})
    assert not report.ok and said in report.problems[0].message
    with pytest.raises(ConfigError, match="CONFIG_GOV_INVALID") as exc:
        create_pr(cfg, {name: body}, actor="alice", role="editor", reason="x",
                  registry=sqlite_registry)  # fmt: skip
    assert said in exc.value.message and "\n" not in exc.value.message
    assert not (cfg.config_root.parent.parent / "etc").exists()
    assert _rows(sqlite_registry) == []


def test_hand_edits_after_apply_are_drift_refused_by_serve_checks_and_apply(
    cfg: AppConfig, sqlite_registry: Registry
) -> None:
    reg = sqlite_registry
    change = _approved(cfg, {"retrain_policy.yaml": HEARTBEAT}, reg, "x")
    merge(cfg, change, actor="bob", role="approver", registry=reg)
    apply(cfg, change, actor="bob", role="approver", registry=reg)
    (cfg.config_root / "retrain_policy.yaml").write_bytes(HEARTBEAT.replace(b"30", b"10"))
    with pytest.raises(ConfigError, match=r"retrain_policy.yaml differ from the applied") as exc:
        require_in_force(cfg)
    assert exc.value.code == "CONFIG_GOV_DRIFT"
    from mlcore.flows._flows import _config  # every flow's configuration

    with pytest.raises(ConfigError, match="CONFIG_GOV_DRIFT"):
        _config(str(cfg.config_root), "dev")
    code, out = _cli("serve", "--workspace", str(cfg.config_root.parent))
    assert code == 2 and "error CONFIG_GOV_DRIFT" in out, out
    initial = Git(cfg.config_root).out("rev-list", "--max-parents=0", MAIN)
    with pytest.raises(GovernanceError, match=r"retrain_policy.yaml differ from the version"):
        apply(cfg, sha=initial, actor="bob", role="approver", registry=reg)
    with pytest.raises(GovernanceError, match="no earlier version"):
        rollback_config(cfg, actor="bob", role="approver", reason="x", registry=reg)
    (cfg.config_root / "retrain_policy.yaml").write_bytes(HEARTBEAT)  # restored
    assert require_in_force(cfg) is not None
    apply(cfg, sha=initial, actor="bob", role="approver", registry=reg)
    (cfg.config_root / "storage.yaml").write_bytes(b"# hand edit\n")
    main = Git(cfg.config_root).resolve(MAIN)
    with pytest.raises(GovernanceError, match=r"storage.yaml differ from the version"):
        rollback_config(cfg, actor="bob", role="approver", reason="x", registry=reg)
    assert Git(cfg.config_root).resolve(MAIN) == main  # no revert commit left behind


def test_outside_a_workspace_governance_is_refused(sqlite_registry: Registry) -> None:
    shipped = load_config(CONFIG_ROOT, "dev")
    with pytest.raises(ConfigError, match="shipped configs folder") as exc:
        validate_change(shipped, {"retrain_policy.yaml": HEARTBEAT})
    assert exc.value.code == "CONFIG_WORKSPACE_NONE"
    assert config_in_force(shipped) is None
    assert not (CONFIG_ROOT / ".git").exists()


def test_a_description_only_change_is_low_risk(cfg: AppConfig) -> None:
    body = (
        (cfg.config_root / "storage.yaml")
        .read_bytes()
        .replace(b"This workspace's archive", b"Our archive")
    )
    report = validate_change(cfg, {"storage.yaml": body})
    assert report.ok and report.risk == Risk.LOW and report.changes[0].keys == ()


def _cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from mlcore.cli import app

    result = CliRunner().invoke(app, list(args))
    out = result.output + (result.stderr if result.stderr_bytes else "")
    assert "Traceback" not in out
    return result.exit_code, out


def test_the_command_line_path_and_its_one_line_refusals(tmp_path: Path) -> None:
    ws = tmp_path / "mine"
    code, out = _cli("init", str(ws), "--config-root", str(CONFIG_ROOT))
    assert code == 0 and "configs/.git" in out, out
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "retrain_policy.yaml").write_bytes(HEARTBEAT)
    (drafts / "passwd").write_bytes(b"root: x\n")
    on = ("--workspace", str(ws))
    code, out = _cli("configs", "validate", str(drafts / "passwd"), *on)
    assert code == 2 and "CONFIG_GOV_INVALID" in out and "'passwd' is not one of" in out
    said = [line for line in out.splitlines() if line.startswith("error")]
    assert said and all(line.endswith("'universe.yaml']") for line in said)  # one line each
    code, out = _cli("configs", "validate", str(drafts / "retrain_policy.yaml"), *on)
    assert code == 0 and "medium risk (heartbeat_seconds)" in out, out
    code, out = _cli("configs", "pr", str(drafts / "retrain_policy.yaml"), "--reason",
                     "faster", "--actor", "alice", *on)  # fmt: skip
    assert code == 0 and ": pr_created" in out, out
    change = out.split()[1].rstrip(":")
    code, out = _cli("configs", "approve", change, "--actor", "alice", "--role", "approver", *on)
    assert code == 1 and "CONFIG_GOV_SELF_APPROVAL" in out, out
    code, out = _cli("configs", "merge", change, "--actor", "bob", "--role", "approver", *on)
    assert code == 1 and "is pr_created: merge needs a change that is approved" in out, out
    for verb in ("approve", "merge", "apply"):
        code, out = _cli("configs", verb, change, "--actor", "bob", "--role", "approver", *on)
        assert code == 0, out
    assert "applied: config version" in out
    code, out = _cli("configs", "status", *on)
    assert code == 0 and f"change {change}: applied" in out, out
    code, out = _cli("config", "check", *on)
    assert code == 0 and "config version in force: " in out, out
    assert (ws / "configs" / "retrain_policy.yaml").read_bytes() == HEARTBEAT
    code, out = _cli("configs", "rollback", "--reason", "undo", "--actor", "bob", "--role",
                     "approver", *on)  # fmt: skip
    assert code == 1 and "CONFIG_GOV_NO_ROLLBACK_TARGET" in out, out


def test_apply_and_rollback_tell_serving_the_config_version(
    cfg: AppConfig, sqlite_registry: Registry, tmp_path: Path
) -> None:
    import json

    from mlcore.serving import serving_dir

    reg = sqlite_registry
    name = "20250101_0000_gov1"
    reg.register(make_version(tmp_path / "models", name), actor="ci", notes="trained")
    for to in ("candidate", "approved", "deployed"):
        reg.transition(name, to, actor="ci", notes="ok", theta=(0.7, 0.3))
    git, _, _ = open_repo(cfg)  # made on first use (this workspace's init made none)
    initial = git.out("rev-list", "--max-parents=0", MAIN)
    apply(cfg, sha=initial, actor="bob", role="approver", registry=reg)
    change = _approved(cfg, {"retrain_policy.yaml": HEARTBEAT}, reg, "x")
    merge(cfg, change, actor="bob", role="approver", registry=reg)
    applied = apply(cfg, change, actor="bob", role="approver", registry=reg)
    notice = json.loads((serving_dir(cfg) / "deployed.json").read_text())
    assert (notice["event"], notice["config_version"]) == ("config_applied", applied.sha)
    assert (notice["model_version"], notice["theta1"], notice["theta2"]) == (name, 0.7, 0.3)
    back = rollback_config(cfg, actor="bob", role="approver", reason="undo", registry=reg)
    notice = json.loads((serving_dir(cfg) / "deployed.json").read_text())
    assert (notice["event"], notice["config_version"]) == ("config_rollback", back.sha)
    last = _rows(reg)[-1]
    assert last.event == "CONFIG_ROLLBACK" and last.details["sha"] == back.sha


def test_two_approvals_at_the_same_moment_are_both_counted(
    cfg: AppConfig, registry: Registry
) -> None:
    import threading

    rec = create_pr(cfg, {"dd_policy.yaml": DD}, actor="alice", role="editor", reason="x",
                    registry=registry)  # fmt: skip
    barrier = threading.Barrier(2, timeout=30)
    errors: list[Exception] = []

    def run(who: str) -> None:
        barrier.wait()
        try:
            approve(cfg, rec.change_id, actor=who, role="approver", registry=registry)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(who,)) for who in ("bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    _, store, _ = open_repo(cfg)
    done = store.get(rec.change_id)
    assert done.state == ChangeState.APPROVED and sorted(done.approvers) == ["bob", "carol"]
    assert [r.new_status for r in _rows(registry) if r.event == "CONFIG_APPROVED"] == [
        "pr_created", "approved",
    ]  # fmt: skip


def test_a_damaged_change_record_is_one_line_naming_it(
    cfg: AppConfig, sqlite_registry: Registry
) -> None:
    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="editor",
                    reason="x", registry=sqlite_registry)  # fmt: skip
    path = cfg.config_root / ".git" / "mlcore" / "changes" / f"{rec.change_id}.json"
    path.write_text('{"state": "approved"')  # cut short
    with pytest.raises(GovernanceError, match=f"{rec.change_id}.json: not a governed") as exc:
        approve(cfg, rec.change_id, actor="bob", role="approver", registry=sqlite_registry)
    assert exc.value.code == "CONFIG_GOV_REPO_INVALID"
    code, out = _cli("configs", "status", "--workspace", str(cfg.config_root.parent))
    assert code == 1 and "error CONFIG_GOV_REPO_INVALID" in out, out


def test_once_api_users_exist_the_command_line_acts_as_its_tokens_user(tmp_path: Path) -> None:
    """Before: `configs approve --role approver --actor anyone` was believed, so one person
    could give a high-risk change both approvals. Once API users exist, a verb runs as its
    token's user (name and role), approver and admin need a TOTP code, and every refusal is
    audited as api.denied."""
    import pyotp

    from mlcore.cli._registry import open_registry
    from mlcore.config import load_config as load

    ws = tmp_path / "mine"
    assert _cli("init", str(ws), "--config-root", str(CONFIG_ROOT))[0] == 0
    on = ("--workspace", str(ws))
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "retrain_policy.yaml").write_bytes(HEARTBEAT)
    # No API user yet: one person's workspace, the declared role stands.
    code, out = _cli("configs", "pr", str(drafts / "retrain_policy.yaml"), "--reason", "faster",
                     "--actor", "alice", *on)  # fmt: skip
    assert code == 0, out
    change = out.split()[1].rstrip(":")

    code, out = _cli("api", "user", "add", "ann", "--role", "approver", "--duty", "ops", *on)
    assert code == 0, out
    secret = out.split("secret=")[1].split("&")[0]
    assert _cli("api", "user", "add", "ed", "--role", "editor", *on)[0] == 0
    tokens = {}
    for name in ("ann", "ed"):
        code, out = _cli("api", "token", "issue", name, *on)
        assert code == 0, out
        tokens[name] = out.strip().splitlines()[-1]

    approve = ("configs", "approve", change, "--role", "approver", *on)
    code, out = _cli(*approve, "--actor", "bob")
    assert code == 1 and "CONFIG_GOV_AUTH_TOKEN_MISSING" in out, out
    code, out = _cli(*approve, "--token", "not-a-token")
    assert code == 1 and "CONFIG_GOV_AUTH_TOKEN_INVALID" in out and "unknown" in out, out
    code, out = _cli(*approve, "--token", tokens["ed"])
    assert code == 1 and "CONFIG_GOV_ROLE_DENIED" in out and "ed's role (editor)" in out, out
    code, out = _cli(*approve, "--token", tokens["ann"])
    assert code == 1 and "CONFIG_GOV_AUTH_TOTP_INVALID" in out and "missing" in out, out
    code, out = _cli(*approve, "--token", tokens["ann"], "--totp", "000000")
    assert code == 1 and "CONFIG_GOV_AUTH_TOTP_INVALID" in out, out
    good = pyotp.TOTP(secret).now()
    code, out = _cli(*approve, "--token", tokens["ann"], "--totp", good, "--actor", "mallory")
    assert code == 0 and ": approved" in out, out
    reg = open_registry(load(ws / "configs"))  # the workspace's registry, as the CLI opens it
    denied = reg.actions(action="api.denied")
    assert len(denied) == 5 and {a.details["via"] for a in denied} == {"mlcore configs approve"}
    approved = [r for r in _rows(reg) if r.event == "CONFIG_APPROVED"]
    assert [r.actor for r in approved] == ["ann"]  # the token's user, not the declared one
