"""``mlcore api``: the Ops API server, its users and tokens, its OpenAPI document."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mlcore.cli._app import command, load_config, typer_app
from mlcore.cli._registry import open_registry
from mlcore.cli._render import out, text
from mlcore.errors import ConfigError

if TYPE_CHECKING:
    from mlcore.api import Users

api_app = typer_app("The Ops API (FastAPI under /api/v1): serve it, manage its users and tokens.")
user_app = typer_app("People who may call the Ops API (role and duty).")
token_app = typer_app("API tokens: issued (shown once), revoked.")
api_app.add_typer(user_app, name="user")
api_app.add_typer(token_app, name="token")

#: ENV holding the TLS key's password, if the key has one (never an option: never logged).
TLS_KEY_PASSWORD_ENV = "MLCORE_API_TLS_KEY_PASSWORD"  # noqa: S105  (a variable name)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _users() -> Users:
    from mlcore.api import Users

    return Users(open_registry(load_config()).engine)


def _user_error(exc: ValueError) -> ConfigError:
    return ConfigError("API_USER_REFUSED", str(exc))


@command(user_app, "add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name (lower case, letters, digits, ._-).")],
    role: Annotated[str, typer.Option(help="viewer, editor, approver or admin.")],
    duty: Annotated[str, typer.Option(help="ops, risk or none (two-person resume).")] = "none",
) -> None:
    """Add a person; approvers and admins get a TOTP secret (its URI printed once)."""
    from mlcore.api import Duty, Role, UserError

    try:
        user, uri = _users().add(name, Role(role), Duty(duty))
    except UserError as exc:
        raise _user_error(exc) from None
    except ValueError:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID",
            f"--role {role!r} / --duty {duty!r}: role one of viewer, editor, approver, admin; "
            "duty one of ops, risk, none",
        ) from None
    text(f"user {user.name}: role {user.role}, duty {user.duty}")
    if uri is not None:
        text("TOTP provisioning URI (shown once; add it to an authenticator app):")
        text(uri)


@command(user_app, "list")
def user_list() -> None:
    """Every user: role, duty, TOTP, tokens (never the secrets)."""
    users = _users()
    table = Table(title="API users")
    for col in ("name", "role", "duty", "totp", "tokens (active/all)", "created"):
        table.add_column(col)
    for u in users.all():
        toks = users.tokens(u.name)
        active = sum(1 for _id, _at, revoked in toks if revoked is None)
        table.add_row(escape(u.name), u.role.value, u.duty.value, "yes" if u.has_totp else "-",
                      f"{active}/{len(toks)}", f"{u.created_at:%Y-%m-%d %H:%M}")  # fmt: skip
    out.print(table)


@command(token_app, "issue")
def token_issue(name: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """Issue a token for a user; printed once (only its sha256 is kept)."""
    from mlcore.api import UserError

    try:
        issued = _users().issue(name)
    except UserError as exc:
        raise _user_error(exc) from None
    text(f"token {issued.token_id} for {issued.user} (shown once; send as "
         "'Authorization: Bearer <token>'):")  # fmt: skip
    text(issued.token)


@command(token_app, "revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token at once."""
    from mlcore.api import UserError

    try:
        _users().revoke(token_id)
    except UserError as exc:
        raise _user_error(exc) from None
    text(f"token {token_id} revoked")


@command(api_app, "openapi")
def api_openapi() -> None:
    """Print the OpenAPI document (YAML; the repository keeps it as openapi.yaml)."""
    from mlcore.api import openapi_yaml

    sys.stdout.write(openapi_yaml())


def check_tls(host: str, cert: Path | None, key: Path | None) -> None:
    """Certificate and key go together, must be readable files; off loopback, TLS is
    required."""
    if (cert is None) != (key is None):
        raise ConfigError("API_TLS_INCOMPLETE", "give both --tls-cert and --tls-key")
    for opt, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not path.is_file():
            raise ConfigError("API_TLS_UNREADABLE", f"{opt} {path}: not a readable file")
    if cert is None and host not in LOOPBACK:
        raise ConfigError("API_TLS_REQUIRED", f"--host {host}: off loopback the API serves "
                          "only with TLS (--tls-cert and --tls-key)")  # fmt: skip


@command(api_app, "serve")
def api_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8443,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(help=f"TLS key (PEM; its password, if any, from {TLS_KEY_PASSWORD_ENV})."),
    ] = None,
) -> None:
    """Serve the Ops API under /api/v1 (uvicorn)."""
    import uvicorn

    from mlcore.api import create_app

    check_tls(host, tls_cert, tls_key)
    cfg = load_config()
    app = create_app(cfg, registry=open_registry(cfg))
    scheme = "https" if tls_cert else "http"
    text(f"Ops API on {scheme}://{host}:{port}/api/v1")
    uvicorn.run(
        app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
        ssl_keyfile_password=os.environ.get(TLS_KEY_PASSWORD_ENV), log_level="warning",
        server_header=False,
    )  # fmt: skip
