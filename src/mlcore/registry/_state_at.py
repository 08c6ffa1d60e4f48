"""What was in force at a time, read from the audit trail alone (a pure function of its rows):
the deployed model version, its θ, the applied config version, the ops flags, and who changed
each last and when.

- model version: the last ``audit.config_changes`` row setting a version's status to
  ``deployed`` (a row taking it out of ``deployed`` clears it);
- θ: the last row of that version whose ``details`` hold ``theta`` ``[θ1, θ2]`` (its
  registration, a promotion with θ) or, for a ``THETA_ROLLBACK``, ``to`` ``[θ1, θ2]`` (one
  without a version applies to the version deployed then);
- config version: the last ``CONFIG_APPLIED`` or ``CONFIG_ROLLBACK`` row whose ``details``
  hold ``git_sha`` (and ``rendered_sha256``);
- flags: the ``after`` of the last ``ok`` ``audit.analytics_actions`` row whose ``after`` is
  a flags document.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from mlcore.registry._records import ActionRecord, ActionResult, AuditEvent, StatusChange

#: The keys of the ops flags document (mlcore.serving's OpsFlags): an ``after`` holding one
#: of them is a flags document.
FLAG_KEYS: Final = frozenset({
    "global_halt", "halted_pairs", "hard_halt", "hard_halted_pairs", "flatten_all",
    "flatten_pairs", "leverage_scale", "seq",
})  # fmt: skip
_CONFIG_EVENTS: Final = (AuditEvent.CONFIG_APPLIED.value, AuditEvent.CONFIG_ROLLBACK.value)


@dataclass(frozen=True)
class Changed:
    """Who made a change, when, and the audit row that records it."""

    by: str
    at: datetime
    row: str  # e.g. "audit.config_changes row 17"


@dataclass(frozen=True)
class ConfigVersionAt:
    """A config version: its git commit and the sha256 of the rendered config."""

    git_sha: str
    rendered_sha256: str | None


@dataclass(frozen=True)
class StateAt:
    """What was in force at ``at`` (None: nothing recorded at or before it)."""

    at: datetime
    model_version: str | None
    model_changed: Changed | None
    theta: tuple[float, float] | None
    theta_changed: Changed | None
    config: ConfigVersionAt | None
    config_changed: Changed | None
    flags: dict[str, Any] | None
    flags_changed: Changed | None

    def as_json(self) -> dict[str, Any]:
        """The state as a JSON-ready dict (times ISO 8601 UTC)."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.astimezone(UTC).isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        return {k: plain(v) for k, v in asdict(self).items()}


def _utc(ts: datetime) -> datetime:
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).astimezone(UTC)


def theta_of(details: Any, key: str = "theta") -> tuple[float, float] | None:
    """``details[key]`` as two finite numbers, else None."""
    value = details.get(key) if isinstance(details, dict) else None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    t1, t2 = float(value[0]), float(value[1])
    return (t1, t2) if math.isfinite(t1) and math.isfinite(t2) else None


def is_flags(doc: Any) -> bool:
    """True when ``doc`` is an ops flags document."""
    return isinstance(doc, dict) and bool(FLAG_KEYS & doc.keys())


def _theta_set(c: StatusChange, deployed: str | None) -> tuple[str, tuple[float, float]] | None:
    """The version whose θ row ``c`` sets, and that θ (None: it sets none)."""
    if c.event == AuditEvent.THETA_ROLLBACK:  # {"from": [..], "to": [..]} (mlcore.ops)
        theta = theta_of(c.details, "to") or theta_of(c.details)
        target = c.model_version or deployed  # without a version: the one deployed then
    else:
        theta, target = theta_of(c.details), c.model_version
    return None if theta is None or target is None else (target, theta)


def _config_of(c: StatusChange) -> ConfigVersionAt | None:
    """The config version row ``c`` applies (or rolls back to), if it is such a row."""
    details = c.details if isinstance(c.details, dict) else {}
    if c.event not in _CONFIG_EVENTS or not isinstance(details.get("git_sha"), str):
        return None
    rendered = details.get("rendered_sha256")
    return ConfigVersionAt(details["git_sha"], rendered if isinstance(rendered, str) else None)


def state_at(
    at: datetime, changes: Iterable[StatusChange], actions: Iterable[ActionRecord]
) -> StateAt:
    """What was in force at ``at``, from the audit rows (any order; later ones ignored)."""
    when = _utc(at)
    deployed: str | None = None
    model_changed: Changed | None = None
    thetas: dict[str, tuple[tuple[float, float], Changed]] = {}
    config: ConfigVersionAt | None = None
    config_changed: Changed | None = None
    for c in sorted(changes, key=lambda c: c.change_id):
        if _utc(c.changed_at) > when:
            continue
        who = Changed(c.actor, _utc(c.changed_at), f"audit.config_changes row {c.change_id}")
        version = c.model_version
        if version is not None and c.new_status == "deployed":
            deployed, model_changed = version, who
        elif version is not None and c.old_status == "deployed" and version == deployed:
            deployed, model_changed = None, who
        theta = _theta_set(c, deployed)
        if theta is not None:
            thetas[theta[0]] = (theta[1], who)
        found = _config_of(c)
        if found is not None:
            config, config_changed = found, who
    flags: dict[str, Any] | None = None
    flags_changed: Changed | None = None
    for a in sorted(actions, key=lambda a: a.action_id):
        if _utc(a.occurred_at) > when or a.result != ActionResult.OK or not is_flags(a.after):
            continue
        flags = a.after
        flags_changed = Changed(
            f"{a.actor} ({a.role}, {a.action})",
            _utc(a.occurred_at),
            f"audit.analytics_actions row {a.action_id}",
        )
    theta_now = thetas.get(deployed) if deployed is not None else None
    return StateAt(
        at=when, model_version=deployed, model_changed=model_changed,
        theta=None if theta_now is None else theta_now[0],
        theta_changed=None if theta_now is None else theta_now[1],
        config=config, config_changed=config_changed, flags=flags, flags_changed=flags_changed,
    )  # fmt: skip
