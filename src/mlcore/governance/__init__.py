"""Governed configuration: a workspace's ``configs/`` folder is a git repository; a change is
validated (schemas, cross-file consistency, a risk rating), proposed on a branch, approved
(two distinct approvers when high risk, never by its author), merged, applied (the version in
force: git SHA + sha256 of the rendered config) and rolled back, each transition a row of
``audit.config_changes``. See docs/configuration.md, "Governed changes"."""

from mlcore.governance._git import init_repo
from mlcore.governance._records import (
    ChangeRecord,
    ChangeState,
    ConfigVersion,
    GovernanceError,
    Role,
)
from mlcore.governance._risk import RISK_TABLE, Risk
from mlcore.governance._validate import FileChange, Problem, ValidationReport, policy_names
from mlcore.governance._verbs import (
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

__all__ = [
    "RISK_TABLE",
    "ChangeRecord",
    "ChangeState",
    "ConfigVersion",
    "FileChange",
    "GovernanceError",
    "Problem",
    "Risk",
    "Role",
    "ValidationReport",
    "apply",
    "approve",
    "config_in_force",
    "create_pr",
    "init_repo",
    "merge",
    "open_repo",
    "policy_names",
    "render",
    "require_in_force",
    "rollback_config",
    "validate_change",
]
