"""The Ops API (FastAPI, under ``/api/v1``): halt, flatten, resume with two-person approval and
a canary, rollback, governed configs, the audit trail; tokens, roles and TOTP (docs/api.md)."""

from mlcore.api._app import PREFIX, create_app, openapi_yaml
from mlcore.api._errors import ApiError
from mlcore.api._users import Duty, IssuedToken, Role, User, UserError, Users, token_sha256

__all__ = [
    "PREFIX",
    "ApiError",
    "Duty",
    "IssuedToken",
    "Role",
    "User",
    "UserError",
    "Users",
    "create_app",
    "openapi_yaml",
    "token_sha256",
]
