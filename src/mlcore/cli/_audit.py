"""``mlcore audit``: prove the audit trail was not rewritten (``verify``) and say what was in
force at a time (``at``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from mlcore.cli._app import command, load_config, typer_app
from mlcore.cli._registry import open_registry, registry_call
from mlcore.cli._render import plain, text
from mlcore.errors import ConfigError, FatalError, shown

if TYPE_CHECKING:
    from mlcore.registry import Changed, StateAt

audit_app = typer_app(
    "The audit trail (append-only, hash-chained): verify it, or see what was in force at a time."
)
_EXAMPLE = "e.g. 2026-01-31T09:30:00Z or 2026-01-31; no offset means UTC"


def parse_at(value: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (no offset: UTC); ``ConfigError``
    ``AUDIT_REQUEST_TIMESTAMP_INVALID`` (exit 2) otherwise."""
    try:
        when = datetime.fromisoformat(value.strip())
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ConfigError(
            "AUDIT_REQUEST_TIMESTAMP_INVALID",
            f"TIMESTAMP {shown(value)} is not an ISO 8601 time ({_EXAMPLE})",
        ) from None


HEAD_RE = re.compile(r"^[0-9a-f]{64}$")


def parse_head(value: str) -> str:
    """A row hash recorded earlier (64 lowercase hex digits); ``ConfigError``
    ``AUDIT_REQUEST_HEAD_INVALID`` (exit 2) otherwise."""
    if not HEAD_RE.fullmatch(value.strip().lower()):
        raise ConfigError(
            "AUDIT_REQUEST_HEAD_INVALID",
            f"--head {shown(value)} is not a row hash (64 hex digits, as `audit verify` prints)",
        )
    return value.strip().lower()


@command(audit_app, "verify")
def audit_verify(
    head: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HASH",
            help="A row hash `audit verify` printed earlier (kept elsewhere): it must still be "
            "in the chain, else rows were removed from its end. Repeatable.",
        ),
    ] = None,
) -> None:
    """Recompute the hash chain of audit.analytics_actions and audit.config_changes: every row
    must match its hash and link to the row before it. Exit 1 naming each broken row."""
    heads = [parse_head(h) for h in head or []]
    reg = open_registry(load_config())
    report = registry_call(lambda: reg.verify_audit(heads))
    actions = report.rows.get("audit.analytics_actions", 0)
    changes = report.rows.get("audit.config_changes", 0)
    if report.intact:
        text(
            f"audit chain intact: {actions} rows in analytics_actions, {changes} in config_changes"
        )
        for table, (row_id, row_hash) in report.heads.items():
            text(f"head of {table}: row {row_id} {row_hash}")
        return
    for broken in report.breaks:
        text(str(broken))
    for missing in report.heads_missing:
        text(f"head {missing}: no longer in the chain (rows after it were removed or rewritten)")
    raise FatalError(
        "AUDIT_CHAIN_BROKEN",
        f"{len(report.breaks) + len(report.heads_missing)} broken link(s) in the audit chain "
        f"({actions} rows in analytics_actions, {changes} in config_changes): rows were "
        "changed, removed or reordered outside mlcore",
    )


def _by(changed: Changed | None) -> str:
    if changed is None:
        return ""
    return f" (by {changed.by} at {changed.at.isoformat()}, {changed.row})"


def print_state(state: StateAt) -> None:
    """The state in force, one line per setting."""
    text(f"in force at {state.at.isoformat()}:")
    version = state.model_version or "none deployed (or none recorded)"
    text(f"model version: {plain(version)}{plain(_by(state.model_changed))}")
    theta = (
        "none recorded"
        if state.theta is None
        else f"θ1={state.theta[0]:.4f}, θ2={state.theta[1]:.4f}"
    )
    text(f"θ: {theta}{plain(_by(state.theta_changed))}")
    config = (
        "none recorded"
        if state.config is None
        else f"git {state.config.git_sha}, rendered sha256 "
        f"{state.config.rendered_sha256 or 'not recorded'}"
    )
    text(f"config version: {plain(config)}{plain(_by(state.config_changed))}")
    flags = "none recorded" if state.flags is None else json.dumps(state.flags, sort_keys=True)
    text(f"flags: {plain(flags)}{plain(_by(state.flags_changed))}")


@command(audit_app, "at")
def audit_at(
    timestamp: Annotated[
        str, typer.Argument(metavar="TIMESTAMP", help=f"ISO 8601 time, {_EXAMPLE}.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """What was in force at TIMESTAMP: the deployed model version, its θ, the applied config
    version, the ops flags, and who changed each last (read from the audit trail)."""
    when = parse_at(timestamp)
    reg = open_registry(load_config())
    state = registry_call(lambda: reg.state_at(when))
    if as_json:
        text(json.dumps(state.as_json(), sort_keys=True))
    else:
        print_state(state)
