"""The API's people and their tokens, in the registry database (``core.api_users``,
``core.api_tokens``). A token is ``secrets.token_urlsafe(32)``, shown once and kept as its
sha256; a TOTP secret (pyotp, 30 s steps) is kept for approvers and admins, with the newest
step used, so that a code is accepted once."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import pyotp
from sqlalchemy import Engine, insert, or_, select, update

from mlcore.registry._tables import api_tokens, api_users

NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
TOTP_STEP_S = 30
TOTP_ISSUER = "mlcore-ops"


class Role(StrEnum):
    """What a person may do, each level including the ones below it."""

    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer ... 3 for admin."""
        return list(Role).index(self)

    @property
    def needs_totp(self) -> bool:
        """Approver- and admin-level actions need a TOTP code."""
        return self.rank >= Role.APPROVER.rank


class Duty(StrEnum):
    """A person's duty for the two-person resume: operations, risk, or neither."""

    OPS = "ops"
    RISK = "risk"
    NONE = "none"


@dataclass(frozen=True)
class User:
    """A person the API knows."""

    name: str
    role: Role
    duty: Duty
    has_totp: bool
    created_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: ``token`` is shown once, never stored."""

    token_id: str
    user: str
    token: str


class UserError(ValueError):
    """A user or token request that cannot be done (the message says why)."""


def token_sha256(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _user(row: object) -> User:
    m = row._mapping  # type: ignore[attr-defined]
    created = m["created_at"]
    return User(name=m["name"], role=Role(m["role"]), duty=Duty(m["duty"]),
                has_totp=m["totp_secret"] is not None,
                created_at=created if created.tzinfo else created.replace(tzinfo=UTC))  # fmt: skip


class Users:
    """Users and tokens on ``engine`` (the registry's)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, role: Role, duty: Duty = Duty.NONE) -> tuple[User, str | None]:
        """Add a person; returns the user and, for approvers and admins, the TOTP provisioning
        URI (shown once). ``UserError`` for a bad name or one taken."""
        if not NAME_RE.fullmatch(name):
            raise UserError(f"user name {name[:70]!r}: lower-case letters, digits, '.', '_', "
                            "'-', starting with a letter, at most 64")  # fmt: skip
        secret = pyotp.random_base32() if role.needs_totp else None
        with self.engine.begin() as conn:
            if conn.execute(select(api_users.c.name).where(api_users.c.name == name)).first():
                raise UserError(f"user {name!r} exists")
            conn.execute(insert(api_users).values(
                name=name, role=role.value, duty=duty.value, totp_secret=secret,
                totp_last_step=None, created_at=datetime.now(UTC),
            ))  # fmt: skip
        uri = None
        if secret is not None:
            uri = pyotp.TOTP(secret, interval=TOTP_STEP_S).provisioning_uri(
                name=name, issuer_name=TOTP_ISSUER
            )
        return self.get(name), uri

    def get(self, name: str) -> User:
        """One user; ``UserError`` if unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(select(api_users).where(api_users.c.name == name)).first()
        if row is None:
            raise UserError(f"no user {name[:70]!r} (mlcore api user add)")
        return _user(row)

    def all(self) -> list[User]:
        """Every user, by name."""
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(api_users).order_by(api_users.c.name))]

    def issue(self, name: str) -> IssuedToken:
        """A new token for ``name`` (shown once)."""
        self.get(name)
        token = secrets.token_urlsafe(32)
        token_id = secrets.token_hex(8)
        with self.engine.begin() as conn:
            conn.execute(insert(api_tokens).values(
                token_id=token_id, user_name=name, token_sha256=token_sha256(token),
                issued_at=datetime.now(UTC), revoked_at=None,
            ))  # fmt: skip
        return IssuedToken(token_id=token_id, user=name, token=token)

    def revoke(self, token_id: str) -> None:
        """Revoke a token; ``UserError`` if there is no such token or it is revoked."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
        if not done:
            raise UserError(f"no unrevoked token {token_id[:40]!r}")

    def tokens(self, name: str) -> list[tuple[str, datetime, datetime | None]]:
        """(token id, issued, revoked) of a user's tokens."""
        query = select(api_tokens).where(api_tokens.c.user_name == name)
        with self.engine.connect() as conn:
            return [(r.token_id, r.issued_at, r.revoked_at) for r in conn.execute(query)]

    def by_token(self, token: str) -> tuple[User | None, bool]:
        """The token's user (None if unknown) and whether the token is revoked."""
        query = (
            select(api_users, api_tokens.c.revoked_at)
            .join(api_tokens, api_tokens.c.user_name == api_users.c.name)
            .where(api_tokens.c.token_sha256 == token_sha256(token))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None, False
        return _user(row), row.revoked_at is not None

    def use_totp(self, name: str, code: str, *, at: float | None = None) -> str | None:
        """Check ``code`` for ``name`` (valid_window 1: the step before, now, after); None if
        good, else why not (``invalid`` or ``replayed``). A good code's step is recorded
        atomically: it and every earlier step are refused from then on."""
        with self.engine.connect() as conn:
            secret = conn.execute(
                select(api_users.c.totp_secret).where(api_users.c.name == name)
            ).scalar()
        if secret is None or not re.fullmatch(r"\d{6}", code):
            return "invalid"
        totp = pyotp.TOTP(secret, interval=TOTP_STEP_S)
        now = time.time() if at is None else at
        steps = [int(now) // TOTP_STEP_S + d for d in (0, -1, 1)]
        good = [s for s in steps if secrets.compare_digest(totp.at(s * TOTP_STEP_S), code)]
        step = good[0] if good else None
        if step is None:
            return "invalid"
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_users)
                .where(
                    api_users.c.name == name,
                    or_(api_users.c.totp_last_step.is_(None), api_users.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            ).rowcount
        return None if done else "replayed"

    def totp_now(self, name: str, *, at: float | None = None) -> str:
        """The current code of ``name`` (tests and the CLI's check)."""
        with self.engine.connect() as conn:
            secret = conn.execute(
                select(api_users.c.totp_secret).where(api_users.c.name == name)
            ).scalar()
        if secret is None:
            raise UserError(f"user {name!r} has no TOTP secret")
        return pyotp.TOTP(secret, interval=TOTP_STEP_S).at(time.time() if at is None else at)
