"""Change records and the versions applied, kept beside the config repository
(``configs/.git/mlcore/``), one lock for every governed verb, the roles and the state machine.
Every transition is also a row of ``audit.config_changes`` (:func:`record_event`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from mlcore._flock import wait_for_flock
from mlcore.errors import FatalError, RetryableError

if TYPE_CHECKING:
    from mlcore.registry import Registry

__all__ = [
    "ChangeRecord",
    "ChangeState",
    "ConfigVersion",
    "GovernanceError",
    "Role",
    "Store",
    "record_event",
]

T = TypeVar("T")
_LOCK_WAIT_S = 10.0
MAX_ACTOR_CHARS = 100


class GovernanceError(FatalError):
    """A governed verb refused: wrong role, wrong state, self-approval, a conflict (exit 1)."""


class ChangeState(StrEnum):
    """Where a config change stands."""

    DRAFT = "draft"
    PR_CREATED = "pr_created"
    APPROVED = "approved"
    MERGED = "merged"
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"


class Role(StrEnum):
    """Who may do what (the Ops API's roles): viewer < editor < approver < admin."""

    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"


_RANK: Final = {Role.VIEWER: 0, Role.EDITOR: 1, Role.APPROVER: 2, Role.ADMIN: 3}

#: verb -> the state a change must be in
NEEDS: Final[Mapping[str, ChangeState]] = {
    "approve": ChangeState.PR_CREATED,
    "merge": ChangeState.APPROVED,
    "apply": ChangeState.MERGED,
}


def check_actor(actor: object) -> str:
    """A non-empty one-line printable actor name (it goes into commits and the audit)."""
    if (not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR_CHARS
            or not actor.isprintable()):  # fmt: skip
        raise GovernanceError(
            "CONFIG_GOV_ACTOR_INVALID",
            f"actor {actor!r:.60}: must be one line of printable text, 1 to {MAX_ACTOR_CHARS} "
            "characters",
            details={"field": "actor"},
        )
    return actor.strip()


def need_role(role: object, least: Role, verb: str) -> Role:
    """``role`` as a Role, refused (``CONFIG_GOV_ROLE_DENIED``) below ``least``."""
    try:
        have = Role(str(role))
    except ValueError:
        raise GovernanceError(
            "CONFIG_GOV_ROLE_DENIED",
            f"role {role!r:.40} is not one of {[str(r) for r in Role]}",
            details={"field": "role"},
        ) from None
    if _RANK[have] < _RANK[least]:
        raise GovernanceError(
            "CONFIG_GOV_ROLE_DENIED",
            f"{verb} needs the {least} role or above; the {have} role may not",
            details={"field": "role"},
        )
    return have


def need_state(record: ChangeRecord, verb: str) -> None:
    """Refuse ``verb`` on a change not in the state it needs, naming both."""
    want = NEEDS[verb]
    if record.state != want:
        raise GovernanceError(
            "CONFIG_GOV_STATE_INVALID",
            f"change {record.change_id} is {record.state}: {verb} needs a change that is {want}",
            details={"change_id": record.change_id, "state": str(record.state)},
        )


@dataclass(frozen=True)
class ChangeRecord:
    """One config change: its branch and commits, files, risk, author and approvals."""

    change_id: str
    state: ChangeState
    author: str
    reason: str
    risk: str
    files: tuple[str, ...]
    keys: Mapping[str, tuple[str, ...]]
    branch: str
    base_sha: str
    head_sha: str
    created_at: str
    approvers: tuple[str, ...] = ()
    merged_sha: str | None = None
    applied_sha: str | None = None

    @property
    def approvals_needed(self) -> int:
        """Distinct approvers this change needs: two when rated high, else one."""
        return 2 if self.risk == "high" else 1

    def details(self) -> dict[str, Any]:
        """The record as the audit row's details."""
        out = asdict(self)
        out["state"] = str(self.state)
        out["files"] = list(self.files)
        out["keys"] = {k: list(v) for k, v in self.keys.items()}
        out["approvers"] = list(self.approvers)
        return out

    def moved(self, state: ChangeState, **changes: Any) -> ChangeRecord:
        """This record in ``state``."""
        return replace(self, state=state, **changes)


@dataclass(frozen=True)
class ConfigVersion:
    """The config version in force: git SHA and sha256 of the rendered config."""

    sha: str
    rendered_sha256: str
    env: str
    applied_at: str
    actor: str
    event: str
    change_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Store:
    """The records of one config repository (``configs/.git/mlcore/``)."""

    folder: Path

    @property
    def root(self) -> Path:
        """Where the records live."""
        return self.folder / ".git" / "mlcore"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One governed verb at a time on this repository (waits up to 10 s)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            wait_for_flock(fd, _LOCK_WAIT_S, lambda: RetryableError(
                "CONFIG_GOV_BUSY", f"another governed config change holds {self.root / 'lock'}; "
                "try again"))  # fmt: skip
            yield
        finally:
            os.close(fd)

    def _write(self, path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def save(self, record: ChangeRecord) -> None:
        """Write ``record`` (replacing its previous state)."""
        self._write(self.root / "changes" / f"{record.change_id}.json", record.details())

    def get(self, change_id: str) -> ChangeRecord:
        """The record of ``change_id`` (``CONFIG_GOV_CHANGE_NOT_FOUND`` if there is none)."""
        ok = isinstance(change_id, str) and 0 < len(change_id) <= 64 and all(
            c.isalnum() or c == "-" for c in change_id)  # fmt: skip
        path = self.root / "changes" / f"{change_id}.json"
        if not ok or not path.is_file():
            raise GovernanceError(
                "CONFIG_GOV_CHANGE_NOT_FOUND",
                f"no config change {change_id!r:.70} in {self.folder}",
                details={"change_id": str(change_id)[:70], "field": "change_id"},
            )
        return _read(path, _record)

    def all(self) -> list[ChangeRecord]:
        """Every change, oldest first."""
        found = [_read(p, _record) for p in (self.root / "changes").glob("*.json")]
        return sorted(found, key=lambda r: (r.created_at, r.change_id))

    def applied(self) -> list[ConfigVersion]:
        """Every version applied (apply or rollback), oldest first."""
        path = self.root / "applied.json"
        if not path.is_file():
            return []
        return _read(path, lambda doc: [ConfigVersion(**entry) for entry in doc])

    def push_applied(self, version: ConfigVersion) -> None:
        """Record ``version`` as the one in force."""
        entries = [asdict(v) for v in self.applied()] + [asdict(version)]
        self._write(self.root / "applied.json", entries)


def _read(path: Path, build: Callable[[Any], T]) -> T:
    """A record file built into its record; ``CONFIG_GOV_REPO_INVALID`` naming the file when
    it is not one (edited by hand, cut short)."""
    try:
        return build(json.loads(path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GovernanceError(
            "CONFIG_GOV_REPO_INVALID",
            f"{path}: not a governed config record ({type(exc).__name__}); restore it from a "
            "backup (the audit table config_changes has every transition)",
            details={"file": str(path)},
        ) from None


def _record(data: dict[str, Any]) -> ChangeRecord:
    data["state"] = ChangeState(data["state"])
    data["files"] = tuple(data["files"])
    data["approvers"] = tuple(data["approvers"])
    data["keys"] = {k: tuple(v) for k, v in data["keys"].items()}
    return ChangeRecord(**data)


def record_event(
    registry: Registry, event: str, *, actor: str, notes: str, details: Mapping[str, Any],
    old: str | None, new: str | None,
) -> None:  # fmt: skip
    """One ``audit.config_changes`` row (hash-chained) for a governed transition."""
    from mlcore.registry import AuditEvent

    registry.record_config_event(
        AuditEvent(event), actor=actor, notes=notes, details=dict(details),
        old_status=None if old is None else str(old), new_status=None if new is None else str(new),
    )  # fmt: skip
