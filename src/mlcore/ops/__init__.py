"""The control plane's domain (no web framework here: the Ops API wraps these): what halt,
flatten and resume do to the ops flags, the two-person resume with its canary, and rollbacks of
the deployed model version and of its θ, audited and announced to serving, whose workers move
by hot swap (see docs/serving.md, "Hot swap")."""

from mlcore.ops._flagset import HaltLevel, halt_book, halted
from mlcore.ops._notice import notify_serving
from mlcore.ops._resume import (
    ResumeBook,
    ResumeRecord,
    ResumeRefused,
    canary_split,
    canonical_sha256,
)
from mlcore.ops._rollback import (
    OpsError,
    RollbackKind,
    RollbackResult,
    announce_config_version,
    rollback_model,
    rollback_theta,
    theta_records,
)

__all__ = [
    "HaltLevel",
    "OpsError",
    "ResumeBook",
    "ResumeRecord",
    "ResumeRefused",
    "RollbackKind",
    "RollbackResult",
    "announce_config_version",
    "canary_split",
    "canonical_sha256",
    "halt_book",
    "halted",
    "notify_serving",
    "rollback_model",
    "rollback_theta",
    "theta_records",
]
