"""``mlcore configs``: governed changes of the workspace's configs (a git repository):
validate, pr, approve, merge, apply, rollback, status, init-git (docs/configuration.md)."""

from __future__ import annotations

import uuid
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlcore.cli._app import command, load_config, typer_app
from mlcore.cli._params import parse_note
from mlcore.cli._render import text
from mlcore.errors import ConfigError

if TYPE_CHECKING:
    from mlcore.governance import ChangeRecord, ConfigVersion, ValidationReport
    from mlcore.registry import Registry

configs_app = typer_app("Governed config changes: validate, pr, approve, merge, apply, rollback.")

_MAX_READ = 1 << 20  # a bigger file is refused here; validation refuses above 256 KiB


class RoleChoice(StrEnum):
    """The role the actor acts in: declared while no API user exists (one person's
    workspace); after that, checked against the token's user (:func:`_who`)."""

    viewer = "viewer"
    editor = "editor"
    approver = "approver"
    admin = "admin"


FilesArg = Annotated[
    list[Path],
    typer.Argument(help="Proposed policy files; each file's name is the policy file it "
                   "replaces (e.g. drafts/universe.yaml replaces configs/universe.yaml)."),
]  # fmt: skip
ActorOpt = Annotated[
    str,
    typer.Option(parser=parse_note, help="Who acts (recorded in the commit and the audit).",
                 envvar="USER", show_envvar=False),
]  # fmt: skip
RoleOpt = Annotated[RoleChoice, typer.Option(help="The role you act in.")]
TokenOpt = Annotated[
    str | None,
    typer.Option(envvar="MLCORE_API_TOKEN", show_envvar=True,
                 help="Your Ops API token: once API users exist, you act as its user (name "
                 "and role), never as one declared."),
]  # fmt: skip
TotpOpt = Annotated[str | None, typer.Option(help="Your TOTP code (approver and admin).")]
ReasonOpt = Annotated[str, typer.Option(parser=parse_note, help="Why (recorded).")]
ChangeArg = Annotated[str, typer.Argument(help="The change id `configs pr` printed.")]


def _read(paths: list[Path]) -> dict[str, bytes]:
    from mlcore._files import FileRefused, read_regular_file

    files: dict[str, bytes] = {}
    for path in paths:
        if path.name in files:
            raise ConfigError("CLI_ARGUMENT_INVALID", f"{path.name} is given twice")
        try:
            files[path.name] = read_regular_file(path, _MAX_READ)
        except FileRefused as exc:
            raise ConfigError("CONFIG_GOV_FILE_REFUSED", str(exc)) from None
    return files


def _print_report(report: ValidationReport) -> None:
    for change in report.changes:
        keys = ", ".join(change.keys) or "descriptions only"
        text(f"  {change.file}: {change.risk} risk ({keys})")
    if report.ok:
        text(f"valid; risk {report.risk}")


def _print_change(rec: ChangeRecord) -> None:
    text(f"change {rec.change_id}: {rec.state} (risk {rec.risk}, branch {rec.branch})")
    if rec.state == "pr_created":
        text(f"  approvals {len(rec.approvers)} of {rec.approvals_needed}"
             f"{': ' + ', '.join(rec.approvers) if rec.approvers else ''}")  # fmt: skip


def _print_version(what: str, version: ConfigVersion) -> None:
    text(f"{what}: config version {version.sha} (rendered sha256 {version.rendered_sha256}, "
         f"env {version.env})")  # fmt: skip


def _registry() -> Registry:
    from mlcore.cli._registry import open_registry

    return open_registry(load_config())


def _who(
    reg: Registry, verb: str, actor: str, role: RoleChoice, token: str | None, totp: str | None
) -> tuple[str, str]:  # fmt: skip
    """(actor, role) a verb runs as. With no API user (one person's workspace) the declared
    ones; once API users exist, the token's user: the declared role may not exceed its role,
    approver and admin need a TOTP code, and every refusal is audited (``api.denied``)."""
    from mlcore.api import Role, Users
    from mlcore.governance import GovernanceError
    from mlcore.registry import ActionResult

    users = Users(reg.engine)
    if not users.all():
        return actor, role.value

    def denied(code: str, message: str, who: str) -> GovernanceError:
        reg.record_action("api.denied", actor=who, role="cli", reason=message,
                          request_id=uuid.uuid4().hex, before=None, after=None,
                          result=ActionResult.DENIED,
                          details={"code": code, "via": f"mlcore configs {verb}"})  # fmt: skip
        return GovernanceError(code, message)

    if token is None:
        raise denied("CONFIG_GOV_AUTH_TOKEN_MISSING", f"configs {verb}: API users exist, so "
                     "you act as your token's user: give --token or MLCORE_API_TOKEN",
                     "anonymous")  # fmt: skip
    user, revoked = users.by_token(token)
    if user is None or revoked:
        raise denied("CONFIG_GOV_AUTH_TOKEN_INVALID", f"configs {verb}: the token is "
                     f"{'revoked' if revoked else 'unknown'}", "anonymous")  # fmt: skip
    wanted = Role(role.value)
    if wanted.rank > user.role.rank:
        raise denied("CONFIG_GOV_ROLE_DENIED", f"configs {verb}: --role {wanted} is above "
                     f"{user.name}'s role ({user.role})", user.name)  # fmt: skip
    if wanted.needs_totp:
        why = "missing" if totp is None else users.use_totp(user.name, totp)
        if why is not None:
            raise denied("CONFIG_GOV_AUTH_TOTP_INVALID", f"configs {verb} as {wanted}: the "
                         f"TOTP code is {why} (--totp)", user.name)  # fmt: skip
    return user.name, wanted.value


@command(configs_app, "init-git")
def configs_init_git() -> None:
    """Put the workspace's configs/ folder under git (one initial commit), if it is not yet."""
    from mlcore.governance import open_repo
    from mlcore.governance._git import MAIN

    git, _, _ = open_repo(load_config())
    text(f"{git.folder}: config repository, main at {git.resolve(MAIN)}")


@command(configs_app, "validate")
def configs_validate(files: FilesArg) -> None:
    """Validate proposed policy files: schema, cross-file consistency, risk per file."""
    from mlcore.governance import validate_change

    report = validate_change(load_config(), _read(files))
    _print_report(report)
    report.raise_if_invalid()


@command(configs_app, "pr")
def configs_pr(files: FilesArg, reason: ReasonOpt, role: RoleOpt = RoleChoice.editor,
               actor: ActorOpt = "cli", token: TokenOpt = None,
               totp: TotpOpt = None) -> None:  # fmt: skip
    """Propose a change: a branch config/<id> with its commit and a change record."""
    from mlcore.governance import create_pr

    cfg, reg = load_config(), _registry()
    actor, who = _who(reg, "pr", actor, role, token, totp)
    rec = create_pr(cfg, _read(files), actor=actor, role=who, reason=reason, registry=reg)
    _print_change(rec)


@command(configs_app, "approve")
def configs_approve(change: ChangeArg, role: RoleOpt, actor: ActorOpt = "cli",
                    reason: ReasonOpt = "", token: TokenOpt = None,
                    totp: TotpOpt = None) -> None:  # fmt: skip
    """Approve a change (approver or admin; never your own; high risk needs two)."""
    from mlcore.governance import approve

    reg = _registry()
    actor, who = _who(reg, "approve", actor, role, token, totp)
    rec = approve(load_config(), change, actor=actor, role=who, registry=reg, reason=reason)
    _print_change(rec)


@command(configs_app, "merge")
def configs_merge(change: ChangeArg, role: RoleOpt, actor: ActorOpt = "cli",
                  token: TokenOpt = None, totp: TotpOpt = None) -> None:  # fmt: skip
    """Merge an approved change onto main (not yet in force: `configs apply`)."""
    from mlcore.governance import merge

    reg = _registry()
    actor, who = _who(reg, "merge", actor, role, token, totp)
    rec = merge(load_config(), change, actor=actor, role=who, registry=reg)
    _print_change(rec)
    text(f"  main at {rec.merged_sha}")


@command(configs_app, "apply")
def configs_apply(
    role: RoleOpt,
    change: Annotated[str | None, typer.Argument(help="A merged change id.")] = None,
    sha: Annotated[str | None, typer.Option(help="Or a commit of main.")] = None,
    actor: ActorOpt = "cli",
    token: TokenOpt = None,
    totp: TotpOpt = None,
) -> None:
    """Put a merged change (or a commit of main) in force (approver or admin in prod)."""
    from mlcore.governance import apply

    if (change is None) == (sha is None):
        raise ConfigError("CLI_ARGUMENT_INVALID", "give a change id or --sha, one of the two")
    reg = _registry()
    actor, who = _who(reg, "apply", actor, role, token, totp)
    version = apply(load_config(), change, sha=sha, actor=actor, role=who, registry=reg)
    _print_version("applied", version)


@command(configs_app, "rollback")
def configs_rollback(
    reason: ReasonOpt,
    role: RoleOpt,
    to: Annotated[str | None, typer.Option(help="A SHA applied before (default: last).")] = None,
    actor: ActorOpt = "cli",
    token: TokenOpt = None,
    totp: TotpOpt = None,
) -> None:
    """Back to the previously applied config version (a revert commit, applied)."""
    from mlcore.governance import rollback_config

    reg = _registry()
    actor, who = _who(reg, "rollback", actor, role, token, totp)
    version = rollback_config(load_config(), actor=actor, role=who, reason=reason,
                              registry=reg, to=to)  # fmt: skip
    _print_version("rolled back", version)


@command(configs_app, "status")
def configs_status() -> None:
    """The config version in force and every change with its state."""
    from mlcore.governance import open_repo, require_in_force

    cfg = load_config()
    _, store, _ = open_repo(cfg)
    version = require_in_force(cfg)
    if version is None:
        text("in force: the workspace's files (no version applied yet)")
    else:
        _print_version("in force", version)
    for rec in store.all():
        _print_change(rec)
