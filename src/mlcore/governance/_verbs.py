"""The governed verbs: validate, pr, approve, merge, apply, rollback, and the version in force.

The workspace's ``configs/`` folder is a git repository; ``main`` holds merged changes, each
change is a branch ``config/<change_id>``. The folder's files are the applied version: apply
and rollback write them (nothing else does here), so ``load_config`` (every command, the
workers, the flows) reads the version in force. Edits by hand are drift, refused at apply and,
once a version is applied, by :func:`require_in_force` (``mlcore serve``, the retrain flow).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlcore.config._app import AppConfig, load_config
from mlcore.config._workspace import Workspace
from mlcore.errors import ConfigError, MlcoreError
from mlcore.governance._git import MAIN, Git, drifted, init_repo, materialise
from mlcore.governance._records import (
    ChangeRecord,
    ChangeState,
    ConfigVersion,
    GovernanceError,
    Role,
    Store,
    check_actor,
    need_role,
    need_state,
    record_event,
)
from mlcore.governance._validate import ValidationReport, check_loads, check_tree, policy_names

if TYPE_CHECKING:
    from mlcore.registry import Registry

log = logging.getLogger("mlcore.governance")
APPLIED_REF = "refs/mlcore/applied"
_POLICIES = (
    "storage", "ml_core_storage", "pipeline", "sources", "data_retention", "universe", "core",
    "features", "feature_order", "training", "costs", "drawdown", "backtest", "retrain", "serving",
)  # fmt: skip


def render(cfg: AppConfig) -> bytes:
    """The loaded policies rendered canonically (sorted JSON of each model's dump; ENV and
    resolved paths left out: they are the machine's, not the config's)."""
    doc = {"env": cfg.env_name,
           "policies": {n: getattr(cfg, n).model_dump(mode="json") for n in _POLICIES}}  # fmt: skip
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _workspace(cfg: AppConfig) -> Workspace:
    ws = cfg.workspace
    if ws is None or ws.kind == "demo":
        where = f"{cfg.config_root} is the shipped configs folder" if ws is None else (
            f"{ws.root} is the demo's workspace")  # fmt: skip
        raise ConfigError(
            "CONFIG_WORKSPACE_NONE",
            f"governed configs live in a workspace of yours, and {where}; `mlcore init DIR` "
            "makes one, then run this inside it or pass --workspace DIR",
        )
    return ws


def open_repo(cfg: AppConfig, actor: str = "mlcore") -> tuple[Git, Store, frozenset[str]]:
    """The workspace's config repository (made on first use), its records, the policy names."""
    ws = _workspace(cfg)
    names = policy_names(ws)
    return init_repo(ws.configs, names, actor), Store(ws.configs), names


def _need_reason(reason: object, verb: str) -> str:
    """A non-empty reason (recorded in the commit and the audit)."""
    if not isinstance(reason, str) or not reason.strip() or "\n" in reason or len(reason) > 2000:
        raise GovernanceError("CONFIG_GOV_REASON_MISSING",
                              f"{verb} needs a reason: one line of text, up to 2000 characters",
                              details={"field": "reason"})  # fmt: skip
    return reason.strip()


def _main(git: Git) -> str:
    """The head of ``main`` (init_repo made it)."""
    head = git.resolve(MAIN)
    if head is None:
        raise GovernanceError("CONFIG_GOV_REPO_INVALID", f"{git.folder}: no main branch")
    return head


def validate_change(cfg: AppConfig, files: Mapping[str, bytes]) -> ValidationReport:
    """Validate ``files`` (policy file name -> proposed bytes) over ``main``: schema, cross-file
    consistency, risk per file."""
    git, _, _ = open_repo(cfg)
    return check_tree(_workspace(cfg), cfg.env_name, git.files(_main(git)), files)


def create_pr(
    cfg: AppConfig, files: Mapping[str, bytes], *, actor: str, role: str, reason: str,
    registry: Registry,
) -> ChangeRecord:  # fmt: skip
    """A branch ``config/<change_id>`` holding ``files`` over ``main`` and its change record
    (pr_created); refused (``CONFIG_GOV_INVALID``) when validation finds a problem."""
    actor = check_actor(actor)
    need_role(role, Role.EDITOR, "pr")
    reason = _need_reason(reason, "pr")
    git, store, _ = open_repo(cfg, actor)
    with store.locked():
        base = _main(git)
        report = check_tree(_workspace(cfg), cfg.env_name, git.files(base), files)
        report.raise_if_invalid()
        change_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        branch = f"config/{change_id}"
        head = git.commit_files([base], files, f"config change {change_id}: {reason}")
        git.update_ref(f"refs/heads/{branch}", head)
        record = ChangeRecord(
            change_id=change_id, state=ChangeState.DRAFT, author=actor, reason=reason,
            risk=str(report.risk), files=tuple(sorted(files)),
            keys={c.file: c.keys for c in report.changes}, branch=branch, base_sha=base,
            head_sha=head, created_at=datetime.now(UTC).isoformat(),
        )  # fmt: skip
        record_event(registry, "CONFIG_VALIDATED", actor=actor, notes=reason,
                     details=record.details(), old=None, new=ChangeState.DRAFT)  # fmt: skip
        record = record.moved(ChangeState.PR_CREATED)
        _transition(registry, store, record, "CONFIG_PR_CREATED", ChangeState.DRAFT, actor, reason)
    return record


def _transition(registry: Registry, store: Store, record: ChangeRecord, event: str,
                old: ChangeState, actor: str, notes: str) -> None:  # fmt: skip
    """Write the audit row of ``record``'s new state, then save it (an audit that fails
    leaves the change where it was)."""
    record_event(registry, event, actor=actor, notes=notes or event.lower(),
                 details=record.details(), old=old, new=record.state)  # fmt: skip
    store.save(record)


def approve(
    cfg: AppConfig, change_id: str, *, actor: str, role: str, registry: Registry,
    reason: str = "",
) -> ChangeRecord:  # fmt: skip
    """One approval of a pr_created change by an approver (or admin) other than its author; it
    is approved once it has the approvals its risk needs (two distinct for high)."""
    actor = check_actor(actor)
    need_role(role, Role.APPROVER, "approve")
    _, store, _ = open_repo(cfg, actor)
    with store.locked():
        record = store.get(change_id)
        need_state(record, "approve")
        if actor == record.author:
            raise GovernanceError(
                "CONFIG_GOV_SELF_APPROVAL",
                f"{actor} wrote change {change_id} and may not approve it; another approver must",
                details={"change_id": change_id, "field": "actor"},
            )
        if actor in record.approvers:
            raise GovernanceError(
                "CONFIG_GOV_ALREADY_APPROVED",
                f"{actor} approved change {change_id} already; a high-risk change needs "
                "another approver",
                details={"change_id": change_id, "field": "actor"},
            )
        approvers = (*record.approvers, actor)
        done = len(approvers) >= record.approvals_needed
        state = ChangeState.APPROVED if done else ChangeState.PR_CREATED
        record = record.moved(state, approvers=approvers)
        note = reason or f"approval {len(approvers)} of {record.approvals_needed}"
        _transition(registry, store, record, "CONFIG_APPROVED", ChangeState.PR_CREATED, actor, note)
    return record


def merge(cfg: AppConfig, change_id: str, *, actor: str, role: str,
          registry: Registry) -> ChangeRecord:  # fmt: skip
    """An approved change onto ``main``: fast-forward when ``main`` has not moved, else a merge
    commit, refused on conflicting edits or when the merged tree does not validate."""
    actor = check_actor(actor)
    need_role(role, Role.APPROVER, "merge")
    git, store, _ = open_repo(cfg, actor)
    with store.locked():
        record = store.get(change_id)
        need_state(record, "merge")
        main = _main(git)
        if main == record.base_sha or main == record.head_sha:
            new = record.head_sha
        else:
            tree, conflicts = git.merge_tree(main, record.head_sha)
            if tree is None:
                raise GovernanceError(
                    "CONFIG_GOV_MERGE_CONFLICT",
                    f"change {change_id}: main moved since it was proposed and edits "
                    f"{', '.join(conflicts)} too; propose it again over the new main",
                    details={"change_id": change_id, "files": conflicts},
                )
            new = git.commit_tree(tree, [main, record.head_sha], f"merge {record.branch}")
            check_loads(_workspace(cfg), cfg.env_name, git.files(new)).raise_if_invalid()
        git.update_ref(MAIN, new, main)
        record = record.moved(ChangeState.MERGED, merged_sha=new)
        _transition(registry, store, record, "CONFIG_MERGED", ChangeState.APPROVED, actor,
                    f"merged into main at {new}")  # fmt: skip
    return record


def _need_apply_role(cfg: AppConfig, role: str, verb: str) -> None:
    need_role(role, Role.APPROVER if cfg.env_name == "prod" else Role.EDITOR, verb)


def _baseline(git: Git, store: Store) -> str:
    """The commit whose files the folder should hold: the version in force, else the first."""
    applied = store.applied()
    if applied:
        return applied[-1].sha
    return git.out("rev-list", "--max-parents=0", MAIN).splitlines()[0]


def _checked(
    cfg: AppConfig, git: Git, store: Store, names: frozenset[str], sha: str
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """``sha``'s files, checked to load, and the files in force now, checked not edited by
    hand (``CONFIG_GOV_DRIFT``); nothing written."""
    ws = _workspace(cfg)
    files = git.files(sha)
    check_loads(ws, cfg.env_name, files).raise_if_invalid()
    before = git.files(_baseline(git, store))
    edited = drifted(ws.configs, before, names)
    if edited:
        raise GovernanceError(
            "CONFIG_GOV_DRIFT",
            f"{ws.configs}: {', '.join(edited)} differ from the version in force (edited by "
            "hand?); propose the edit with `mlcore configs pr` or restore the file(s) first",
            details={"files": edited},
        )
    return files, before


def _put_in_force(
    cfg: AppConfig, git: Git, store: Store, names: frozenset[str], sha: str, *, actor: str,
    event: str, change_id: str | None, extra: Mapping[str, object],
) -> ConfigVersion:  # fmt: skip
    """Write ``sha``'s files into the folder (checked first), load and render them, record."""
    files, before = _checked(cfg, git, store, names, sha)
    folder = _workspace(cfg).configs
    materialise(folder, files, names)
    try:
        loaded = load_config(folder, cfg.env_name)
    except ConfigError:
        materialise(folder, before, names)
        raise
    version = ConfigVersion(
        sha=sha, rendered_sha256=hashlib.sha256(render(loaded)).hexdigest(), env=cfg.env_name,
        applied_at=datetime.now(UTC).isoformat(), actor=actor, event=event,
        change_id=change_id, extra=dict(extra),
    )  # fmt: skip
    store.push_applied(version)
    git.update_ref(APPLIED_REF, sha)
    return version


def _announce(cfg: AppConfig, registry: Registry, event: str, sha: str) -> list[str]:
    """Tell serving (``deployed.json``, and Redis when set) that config ``sha`` is in force,
    with the deployed version and its θ, so running workers move to it by hot swap; nothing
    when no version is deployed (workers read the applied files when they start). A failure
    to tell is logged: the version stays applied, taken at the workers' next start."""
    rec = registry.deployed()
    if rec is None:
        return []
    from mlcore.ops import notify_serving  # the execution stack: only when a version serves

    try:
        if rec.theta1 is not None and rec.theta2 is not None:
            theta = (float(rec.theta1), float(rec.theta2))
        else:
            from mlcore.execution import PairModels

            folder = registry.served_folder(rec.model_version)
            theta = PairModels.load(folder, sums=rec.checksums).decision_params().theta_initial
        return notify_serving(
            cfg, event, model_version=rec.model_version,
            model_path=str(registry.served_folder(rec.model_version)), theta=theta,
            config_version=sha,
        )  # fmt: skip
    except (MlcoreError, OSError, ValueError) as exc:
        log.warning("config %s applied, but serving was not told (%s); workers take it at "
                    "their next start", sha, exc)  # fmt: skip
        return []


def apply(
    cfg: AppConfig, change_id: str | None = None, *, sha: str | None = None, actor: str,
    role: str, registry: Registry,
) -> ConfigVersion:  # fmt: skip
    """Put a merged change (or a commit of ``main``) in force: the folder's files become that
    commit's; recorded as CONFIG_APPLIED with its SHA and the rendered config's sha256."""
    actor = check_actor(actor)
    _need_apply_role(cfg, role, "apply")
    git, store, names = open_repo(cfg, actor)
    with store.locked():
        record = None
        if change_id is not None:
            record = store.get(change_id)
            need_state(record, "apply")
            target = record.merged_sha
        else:
            target = git.resolve(sha) if isinstance(sha, str) and sha.isalnum() else None
            main = git.resolve(MAIN)
            if target is None or git.run("merge-base", "--is-ancestor", target, str(main),
                                         ok=(0, 1)).returncode:  # fmt: skip
                raise GovernanceError(
                    "CONFIG_GOV_SHA_UNKNOWN",
                    f"{sha!r:.50} is not a commit of the config repository's main branch",
                    details={"field": "sha"},
                )
        if target is None:  # a merged record always names its merge commit
            raise GovernanceError(
                "CONFIG_GOV_STATE_INVALID", f"change {change_id}: no merge commit"
            )
        version = _put_in_force(cfg, git, store, names, target, actor=actor, event="apply",
                                change_id=change_id, extra={})  # fmt: skip
        notified = _announce(cfg, registry, "config_applied", target)
        details = {"sha": target, "rendered_sha256": version.rendered_sha256, "env": version.env,
                   "change_id": change_id, "notified": notified}  # fmt: skip
        if record is not None:
            record = record.moved(ChangeState.APPLIED, applied_sha=target)
            store.save(record)
            details = {**record.details(), **details}
        record_event(registry, "CONFIG_APPLIED", actor=actor, notes=f"applied {target}",
                     details=details, old=ChangeState.MERGED if record else None,
                     new=ChangeState.APPLIED)  # fmt: skip
    return version


def rollback_config(
    cfg: AppConfig, *, actor: str, role: str, reason: str, registry: Registry,
    to: str | None = None,
) -> ConfigVersion:  # fmt: skip
    """Back to the previously applied version (or ``to``, a SHA applied before): a commit on
    ``main`` whose tree is that version's (a revert of everything since), put in force and
    recorded as CONFIG_ROLLBACK. The rendered config is then byte-identical to that version's."""
    actor = check_actor(actor)
    _need_apply_role(cfg, role, "rollback")
    reason = _need_reason(reason, "rollback")
    git, store, names = open_repo(cfg, actor)
    with store.locked():
        history = store.applied()
        if not history:
            raise GovernanceError(
                "CONFIG_GOV_NO_ROLLBACK_TARGET",
                "no config version was applied yet: nothing to roll back",
            )
        current = history[-1]
        earlier = [v for v in history[:-1] if v.sha != current.sha]
        if to is not None:
            earlier = [v for v in earlier if v.sha.startswith(str(to)) and len(str(to)) >= 7]
        if not earlier:
            what = f"{to!r:.50} is not a version applied before" if to else "no earlier version"
            raise GovernanceError("CONFIG_GOV_NO_ROLLBACK_TARGET",
                                  f"rollback: {what} (in force: {current.sha})",
                                  details={"field": "to"})  # fmt: skip
        target = earlier[-1]
        _checked(cfg, git, store, names, target.sha)  # before main gets the revert commit
        main = _main(git)
        tree = git.out("rev-parse", f"{target.sha}^{{tree}}")
        commit = git.commit_tree(tree, [main], f"rollback to {target.sha}: {reason}")
        git.update_ref(MAIN, commit, main)
        moved = {"to": target.sha, "from": current.sha}
        version = _put_in_force(cfg, git, store, names, commit, actor=actor, event="rollback",
                                change_id=None, extra=moved)  # fmt: skip
        if current.change_id is not None:
            store.save(store.get(current.change_id).moved(ChangeState.ROLLED_BACK))
        notified = _announce(cfg, registry, "config_rollback", commit)
        record_event(registry, "CONFIG_ROLLBACK", actor=actor, notes=reason, details={
            "sha": commit, "to": target.sha, "from": current.sha,
            "rendered_sha256": version.rendered_sha256,
            "identical": version.rendered_sha256 == target.rendered_sha256,
            "change_id": current.change_id, "notified": notified,
        }, old=ChangeState.APPLIED, new=ChangeState.ROLLED_BACK)  # fmt: skip
    return version


def config_in_force(cfg: AppConfig) -> ConfigVersion | None:
    """The config version applied last (None before the first apply or outside a workspace)."""
    ws = cfg.workspace
    if ws is None or not (ws.configs / ".git").is_dir():
        return None
    applied = Store(ws.configs).applied()
    return applied[-1] if applied else None


def require_in_force(cfg: AppConfig) -> ConfigVersion | None:
    """The version in force, refused (``CONFIG_GOV_DRIFT``) when the folder's files are not
    that version's (edited by hand after apply): what runs is what was approved."""
    version = config_in_force(cfg)
    if version is None or cfg.workspace is None:
        return version
    git = Git(cfg.workspace.configs)
    edited = drifted(cfg.workspace.configs, git.files(version.sha), policy_names(cfg.workspace))
    if edited:
        raise ConfigError(
            "CONFIG_GOV_DRIFT",
            f"{cfg.workspace.configs}: {', '.join(edited)} differ from the applied config "
            f"version {version.sha[:12]} (edited by hand?); restore them or propose the edit "
            "with `mlcore configs pr`",
            details={"files": edited},
        )
    return version
