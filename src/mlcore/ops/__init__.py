"""The control plane's domain (no web framework here: the Ops API wraps these): rollbacks of
the deployed model version and of its θ, audited and announced to serving, whose workers move
by hot swap (see docs/serving.md, "Hot swap")."""

from mlcore.ops._notice import notify_serving
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
    "OpsError",
    "RollbackKind",
    "RollbackResult",
    "announce_config_version",
    "notify_serving",
    "rollback_model",
    "rollback_theta",
    "theta_records",
]
