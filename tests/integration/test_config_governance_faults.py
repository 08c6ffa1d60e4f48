"""Governed configs when things fail half-way: the registry gone between the files and the
audit row (nothing in force unaudited), two processes at a workspace's first governed use."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from mlcore.config import AppConfig, init_workspace, load_config
from mlcore.errors import MlcoreError
from mlcore.governance import (
    apply,
    approve,
    config_in_force,
    create_pr,
    merge,
    open_repo,
    rollback_config,
)
from mlcore.governance._git import MAIN
from mlcore.registry import Registry, open_registry
from tests.conftest import CONFIG_ROOT

HEARTBEAT = b"heartbeat_seconds:\n  value: 30\n  description: Beat faster.\n"
CLOSED = "postgresql+psycopg://postgres@127.0.0.1:1/mlcore?connect_timeout=2"


@pytest.fixture
def cfg(tmp_path: Path) -> AppConfig:
    init_workspace(tmp_path / "ws", CONFIG_ROOT)
    return load_config(tmp_path / "ws" / "configs", "dev")


def _folder(cfg: AppConfig) -> dict[str, bytes]:
    assert cfg.workspace is not None
    return {p.name: p.read_bytes() for p in sorted(cfg.workspace.configs.glob("*.yaml"))}


def _one_line(exc: MlcoreError) -> str:
    said = str(exc)
    assert "\n" not in said and exc.code.startswith("REGISTRY_"), said
    return said


def test_apply_and_rollback_with_the_registry_gone_leave_the_folder_and_main_as_they_were(
    cfg: AppConfig, tmp_path: Path
) -> None:
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    gone = Registry(create_engine(CLOSED))  # a PostgreSQL registry whose server went away
    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="editor",
                    reason="faster", registry=reg)  # fmt: skip
    approve(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    merge(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    before = _folder(cfg)
    with pytest.raises(MlcoreError) as caught:
        apply(cfg, rec.change_id, actor="bob", role="approver", registry=gone)
    _one_line(caught.value)
    assert _folder(cfg) == before and config_in_force(cfg) is None
    _, store, _ = open_repo(cfg)
    assert store.get(rec.change_id).state == "merged"  # apply can be run again
    applied = apply(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    assert _folder(cfg)["retrain_policy.yaml"] == HEARTBEAT
    git, _, _ = open_repo(cfg)
    main = git.resolve(MAIN)
    with pytest.raises(MlcoreError) as caught:
        apply(cfg, sha=git.out("rev-list", "--max-parents=0", MAIN), actor="bob",
              role="approver", registry=gone)  # fmt: skip
    _one_line(caught.value)
    assert _folder(cfg)["retrain_policy.yaml"] == HEARTBEAT
    assert config_in_force(cfg) == applied and git.resolve(MAIN) == main


def test_rollback_with_the_registry_gone_commits_nothing_on_main(
    cfg: AppConfig, tmp_path: Path
) -> None:
    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    gone = Registry(create_engine(CLOSED))
    git, _, _ = open_repo(cfg)
    apply(cfg, sha=git.out("rev-list", "--max-parents=0", MAIN), actor="bob", role="approver",
          registry=reg)  # fmt: skip
    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="editor",
                    reason="faster", registry=reg)  # fmt: skip
    approve(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    merge(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    applied = apply(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    main, before = git.resolve(MAIN), _folder(cfg)
    with pytest.raises(MlcoreError) as caught:
        rollback_config(cfg, actor="bob", role="approver", reason="undo", registry=gone)
    _one_line(caught.value)
    assert _folder(cfg) == before and config_in_force(cfg) == applied
    assert git.resolve(MAIN) == main  # no revert commit left behind
    back = rollback_config(cfg, actor="bob", role="approver", reason="undo", registry=reg)
    assert back.extra["from"] == applied.sha and git.resolve(MAIN) == back.sha


def _first_use(folders: list[str], start: Any, out: Any) -> None:
    """Each workspace's first governed use, at the same moment as the other process."""
    for folder in folders:
        cfg = load_config(Path(folder), "dev")
        start.wait(60)
        try:
            git, _, _ = open_repo(cfg)
            out.put((folder, str(git.resolve(MAIN))))
        except Exception as exc:
            out.put((folder, f"{type(exc).__name__}: {exc}"))


def test_two_processes_at_a_workspace_first_governed_use_share_one_repository(
    tmp_path: Path,
) -> None:
    folders = []
    for n in range(6):
        init_workspace(tmp_path / f"ws{n}", CONFIG_ROOT)
        folders.append(str(tmp_path / f"ws{n}" / "configs"))
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_first_use, args=(folders, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    said: dict[str, set[str]] = {}
    for _ in range(2 * len(folders)):
        folder, main = out.get(timeout=180)
        said.setdefault(folder, set()).add(main)
    for p in procs:
        p.join(60)
    assert all(len(m) == 1 and len(next(iter(m))) == 40 for m in said.values()), said


def test_audit_at_names_the_config_version_applied_and_rolled_back(
    cfg: AppConfig, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    git, _, _ = open_repo(cfg)
    first = apply(cfg, sha=git.out("rev-list", "--max-parents=0", MAIN), actor="bob",
                  role="approver", registry=reg)  # fmt: skip
    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="editor",
                    reason="faster", registry=reg)  # fmt: skip
    approve(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    merge(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    second = apply(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    then = reg.state_at(datetime.now(UTC))
    assert then.config is not None and then.config_changed is not None
    assert (then.config.git_sha, then.config.rendered_sha256) == (
        second.sha, second.rendered_sha256)  # fmt: skip
    back = rollback_config(cfg, actor="carol", role="approver", reason="undo", registry=reg)
    now = reg.state_at(datetime.now(UTC))
    assert now.config is not None and now.config_changed is not None
    assert now.config.git_sha == back.sha and now.config_changed.by == "carol"
    assert now.config.rendered_sha256 == first.rendered_sha256  # byte-identical to the first


@pytest.mark.parametrize("entry", [{"sha": 5}, {"sha": "zz"}, {"actor": ["x"]}, {"extra": 3}])
def test_an_applied_history_edited_by_hand_is_one_line_naming_it(
    cfg: AppConfig, tmp_path: Path, entry: dict[str, Any]
) -> None:
    import json

    from mlcore.governance import require_in_force

    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    git, store, _ = open_repo(cfg)
    apply(cfg, sha=git.out("rev-list", "--max-parents=0", MAIN), actor="bob", role="approver",
          registry=reg)  # fmt: skip
    path = store.root / "applied.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps([{**doc[0], **entry}]))
    for call in (lambda: require_in_force(cfg), lambda: rollback_config(
            cfg, actor="bob", role="approver", reason="undo", registry=reg)):  # fmt: skip
        with pytest.raises(MlcoreError) as caught:
            call()
        assert caught.value.code == "CONFIG_GOV_REPO_INVALID" and "applied.json" in str(
            caught.value)  # fmt: skip


@pytest.mark.parametrize("edit", [{"merged_sha": 5}, {"author": 7}, {"files": [1]}])
def test_a_change_record_of_the_wrong_types_is_one_line_naming_it(
    cfg: AppConfig, tmp_path: Path, edit: dict[str, Any]
) -> None:
    import json

    reg = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    rec = create_pr(cfg, {"retrain_policy.yaml": HEARTBEAT}, actor="alice", role="editor",
                    reason="faster", registry=reg)  # fmt: skip
    approve(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    merge(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    _, store, _ = open_repo(cfg)
    path = store.root / "changes" / f"{rec.change_id}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(MlcoreError) as caught:
        apply(cfg, rec.change_id, actor="bob", role="approver", registry=reg)
    assert caught.value.code == "CONFIG_GOV_REPO_INVALID" and path.name in str(caught.value)
