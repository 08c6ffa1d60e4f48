"""Rollbacks of the control plane: the deployed model version back to the one deployed before
it (the registry's rollback), or θ of the deployed version back to its previous θ record. Each
is checked before anything changes (the version it would put back must pass the checks serving
makes; θ must be inside core_policy's theta_search_range), recorded as an ``ops.rollback``
action with before and after, then announced to serving, whose workers take it by hot swap."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import update

from mlcore.config import AppConfig
from mlcore.errors import FatalError, MlcoreError
from mlcore.execution import PairModels, check_serving, checked_theta
from mlcore.ops._audit import THETA_ROLLBACK, record_action, record_theta_event
from mlcore.ops._notice import notify_serving
from mlcore.registry import ActionResult, ModelRecord, Registry, RegistryError, registry_for
from mlcore.registry._tables import model_registry

log = logging.getLogger("mlcore.ops")
ACTION = "ops.rollback"


class OpsError(FatalError):
    """A control-plane request refused (its code says why; nothing was changed)."""


class RollbackKind(StrEnum):
    """What a rollback puts back."""

    MODEL = "model"
    THETA = "theta"


@dataclass(frozen=True)
class RollbackResult:
    """What one rollback did: what was in force before and after, its audit row, where the
    serving notice went."""

    kind: RollbackKind
    model_before: str
    model_after: str
    theta_before: tuple[float, float]
    theta_after: tuple[float, float]
    request_id: str
    action_id: int
    notified: tuple[str, ...] = field(default=())

    def before(self) -> dict[str, Any]:
        return {"model_version": self.model_before, "theta": list(self.theta_before)}

    def after(self) -> dict[str, Any]:
        return {"model_version": self.model_after, "theta": list(self.theta_after)}


@dataclass(frozen=True)
class _Request:
    """Who asks for which rollback, and why."""

    kind: RollbackKind
    actor: str
    role: str
    reason: str
    request_id: str

    @classmethod
    def make(
        cls, kind: RollbackKind, actor: str, role: str, reason: str, request_id: str | None
    ) -> _Request:
        for name, value in (("reason", reason), ("actor", actor), ("role", role)):
            if not value.strip():
                raise OpsError("OPS_REQUEST_INVALID", f"{name}: a rollback needs one (empty)")
        return cls(kind, actor, role, reason, request_id or uuid.uuid4().hex)

    def record(
        self, reg: Registry, before: dict[str, Any] | None, after: dict[str, Any] | None,
        result: ActionResult, details: dict[str, Any],
    ) -> int:  # fmt: skip
        return record_action(
            reg, ACTION, actor=self.actor, role=self.role, reason=self.reason,
            request_id=self.request_id, before=before, after=after, result=result,
            details={"kind": str(self.kind), **details},
        )  # fmt: skip

    def alert(self, reg: Registry, message: str, version: str) -> None:
        """The done rollback's alert (a warning: people must know what serves now)."""
        code = f"OPS_ROLLBACK_{str(self.kind).upper()}"
        try:
            reg.raise_alert(code, f"{message}, by {self.actor}: {self.reason[:1000]}",
                            channel="ops", severity="warning",
                            details={"model_version": version, "actor": self.actor,
                                     "request_id": self.request_id})  # fmt: skip
        except Exception as exc:  # the rollback is done and audited; its alert is the lesser loss
            log.error("alert %s not recorded (%s)", code, type(exc).__name__)

    def refused(
        self, reg: Registry, before: dict[str, Any] | None, code: str, message: str
    ) -> OpsError:
        """Record the refused request; return the error to raise (nothing was changed)."""
        exc = OpsError(code, message)
        try:
            self.record(reg, before, before, ActionResult.REFUSED,
                        {"code": code, "message": message})  # fmt: skip
        except Exception as failed:  # the refusal stands even if its record cannot be written
            log.error("refused rollback not recorded (%s)", type(failed).__name__)
        return exc


def _theta_of(rec: ModelRecord, reg: Registry) -> tuple[float, float]:
    """θ served for ``rec``: its registry row's, else the initial θ its decision.json records."""
    if rec.theta1 is not None and rec.theta2 is not None:
        return float(rec.theta1), float(rec.theta2)
    folder = reg.served_folder(rec.model_version)
    return PairModels.load(folder, sums=rec.checksums).decision_params().theta_initial


def _current_theta(req: _Request, reg: Registry, rec: ModelRecord) -> tuple[float, float]:
    """θ in force for the deployed ``rec``; its files unreadable: refused and recorded
    (OPS_ROLLBACK_CURRENT_UNREADABLE), never an unhandled error."""
    try:
        return _theta_of(rec, reg)
    except (MlcoreError, ValueError, OSError) as exc:
        why = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise req.refused(reg, {"model_version": rec.model_version},
                          "OPS_ROLLBACK_CURRENT_UNREADABLE",
                          f"the θ in force for {rec.model_version} cannot be read ({why}): "
                          "nothing rolled back") from None  # fmt: skip


def _state(rec: ModelRecord, theta: tuple[float, float]) -> dict[str, Any]:
    return {"model_version": rec.model_version, "theta": list(theta)}


def _unusable(cfg: AppConfig, reg: Registry, version: str) -> str | None:
    """Why the version to put back fails what serving checks (files against the registry's
    checksums, restored if damaged; its decision record; trained on the universe's pairs at
    the serving timeframe), or None."""
    try:
        folder = reg.checked(version, actor="ops")
        models = PairModels.load(folder, sums=reg.get(version).checksums)
        pairs = [p.pair_id for p in cfg.universe.pairs]
        check_serving(models.decision_params(), pairs, cfg.serving.timeframe)
    except (MlcoreError, ValueError, OSError) as exc:
        return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return None


def rollback_model(
    cfg: AppConfig, *, actor: str, role: str, reason: str, to_version: str | None = None,
    request_id: str | None = None,
) -> RollbackResult:  # fmt: skip
    """Put back the version deployed before the one in service (``to_version``, when given,
    must be that one). ``OpsError`` OPS_ROLLBACK_NO_TARGET / _TARGET_MISMATCH /
    _TARGET_UNUSABLE / _CONFLICT (each recorded as refused); nothing changed then."""
    req = _Request.make(RollbackKind.MODEL, actor, role, reason, request_id)
    reg = registry_for(cfg)
    current = reg.deployed()
    if current is None:
        raise req.refused(reg, None, "OPS_ROLLBACK_NO_TARGET",
                          "no version is deployed: nothing to roll back")  # fmt: skip
    theta_before = _current_theta(req, reg, current)
    before = _state(current, theta_before)
    earlier = [r for r in reg.records("approved") if r.deployed_at is not None]
    if not earlier:
        raise req.refused(reg, before, "OPS_ROLLBACK_NO_TARGET",
                          f"{current.model_version} is deployed but no earlier deployed version "
                          "is kept: nothing to roll back to")  # fmt: skip
    target = max(earlier, key=lambda r: r.deployed_at or r.updated_at).model_version
    if to_version is not None and to_version != target:
        raise req.refused(reg, before, "OPS_ROLLBACK_TARGET_MISMATCH",
                          f"to_version: {to_version!r} is not the version a rollback puts back "
                          f"({target}, deployed before {current.model_version}): nothing "
                          "rolled back")  # fmt: skip
    why = _unusable(cfg, reg, target)
    if why is not None:
        raise req.refused(reg, before, "OPS_ROLLBACK_TARGET_UNUSABLE",
                          f"model version {target} cannot be served ({why}): nothing rolled "
                          "back")  # fmt: skip
    try:
        done = reg.rollback(actor=actor, notes=reason, expected=current.model_version)
    except RegistryError as exc:
        raise req.refused(reg, before, "OPS_ROLLBACK_CONFLICT", exc.message) from None
    rec = done.deployed
    theta = _theta_of(rec, reg)
    folder = str(reg.served_folder(rec.model_version))
    notified = notify_serving(cfg, "model_rollback", model_version=rec.model_version,
                              model_path=folder, theta=theta)  # fmt: skip
    action_id = req.record(reg, before, _state(rec, theta), ActionResult.OK, {"notified": notified})
    req.alert(reg, f"model rolled back from {done.rolled_back} to {rec.model_version}",
              rec.model_version)  # fmt: skip
    log.info("rolled back %s; %s is deployed (θ %s)", done.rolled_back, rec.model_version,
             list(theta))  # fmt: skip
    return RollbackResult(req.kind, done.rolled_back, rec.model_version, theta_before, theta,
                          req.request_id, action_id, tuple(notified))  # fmt: skip


def theta_records(reg: Registry, version: str) -> list[tuple[float, float]]:
    """The θ records of ``version`` in force one after another, the newest last: each θ given
    with a status change or named in a θ rollback adds one, each θ rollback to the previous
    record takes one back."""
    stack: list[tuple[float, float]] = []
    for row in reg.history(version):
        d = row.details or {}
        if row.event == THETA_ROLLBACK:
            frm, to = _pair(d.get("from")), _pair(d.get("to"))
            if stack and stack[-1] == frm and not d.get("named"):
                stack.pop()  # back to the record before: the one rolled back from is gone
            if to is not None and (not stack or stack[-1] != to):
                stack.append(to)  # a θ named explicitly is a record of its own
        elif (theta := _pair(d.get("theta"))) is not None and (not stack or stack[-1] != theta):
            stack.append(theta)
    return stack


def _pair(value: Any) -> tuple[float, float] | None:
    """A recorded θ as a pair of floats (None when the record holds none)."""
    if isinstance(value, list | tuple) and len(value) == 2:
        try:
            return float(value[0]), float(value[1])
        except (TypeError, ValueError):
            return None
    return None


def rollback_theta(
    cfg: AppConfig, *, actor: str, role: str, reason: str,
    to: tuple[float, float] | None = None, request_id: str | None = None,
) -> RollbackResult:  # fmt: skip
    """θ of the deployed version back to its previous θ record (or to ``to``, checked against
    core_policy's theta_search_range). ``OpsError`` OPS_ROLLBACK_NO_TARGET /
    _THETA_INVALID / _CONFLICT (each recorded as refused); nothing changed then."""
    req = _Request.make(RollbackKind.THETA, actor, role, reason, request_id)
    reg = registry_for(cfg)
    rec = reg.deployed()
    if rec is None:
        raise req.refused(reg, None, "OPS_ROLLBACK_NO_TARGET",
                          "no version is deployed: no θ to roll back")  # fmt: skip
    current = _current_theta(req, reg, rec)
    before = _state(rec, current)
    if to is not None:
        try:
            target = checked_theta(cfg, to, "to", search_range=True)
        except MlcoreError as exc:
            raise req.refused(reg, before, "OPS_ROLLBACK_THETA_INVALID", exc.message) from None
    else:
        stack = theta_records(reg, rec.model_version)
        if not stack or stack[-1] != current:
            stack.append(current)
        if len(stack) < 2:
            why = f"{rec.model_version} has no θ record before {list(current)}"
            raise req.refused(reg, before, "OPS_ROLLBACK_NO_TARGET",
                              f"{why}: nothing rolled back (name one with `to`)")  # fmt: skip
        target = stack[-2]
    with reg.engine.begin() as conn:
        changed = conn.execute(
            update(model_registry)
            .where(model_registry.c.model_version == rec.model_version)
            .where(model_registry.c.status == "deployed")
            .values(theta1=target[0], theta2=target[1])
        ).rowcount
        if changed == 1:
            record_theta_event(conn, rec.model_version, actor=actor, notes=reason,
                               details={"from": list(current), "to": list(target),
                                        "named": to is not None})  # fmt: skip
    if changed != 1:
        raise req.refused(reg, before, "OPS_ROLLBACK_CONFLICT",
                          f"{rec.model_version} is no longer deployed: θ not rolled back; "
                          "decide again")  # fmt: skip
    folder = str(reg.served_folder(rec.model_version))
    notified = notify_serving(cfg, "theta_rollback", model_version=rec.model_version,
                              model_path=folder, theta=target)  # fmt: skip
    action_id = req.record(
        reg, before, _state(rec, target), ActionResult.OK, {"notified": notified}
    )
    req.alert(reg, f"θ of {rec.model_version} rolled back {list(current)} -> {list(target)}",
              rec.model_version)  # fmt: skip
    log.info("θ of %s rolled back %s -> %s", rec.model_version, list(current), list(target))
    return RollbackResult(req.kind, rec.model_version, rec.model_version, current, target,
                          req.request_id, action_id, tuple(notified))  # fmt: skip


def announce_config_version(cfg: AppConfig, config_version: str) -> list[str]:
    """Tell serving that ``config_version`` is in force (a config applied or rolled back):
    the running workers re-read their configuration by hot swap, keeping their pairs' state.
    Returns where the notice went (nothing when no version is deployed: nothing is served)."""
    if not config_version.strip():
        raise OpsError("OPS_REQUEST_INVALID", "config_version: empty")
    reg = registry_for(cfg)
    rec = reg.deployed()
    if rec is None:
        return []
    return notify_serving(cfg, "config_applied", model_version=rec.model_version,
                          model_path=str(reg.served_folder(rec.model_version)),
                          theta=_theta_of(rec, reg), config_version=config_version)  # fmt: skip
