"""Automatic rollback of the deployed version on live decay (spec 002 運用 Runbook: Sharpe -20%
or MaxDD +3 points; runbook_policy.yaml ``auto_rollback``).

The verdict is a pure function of the live performance since deployment and the version's own
backtest:

- ``inconclusive`` below the minimum sample (bars *and* closed trades): hold and alert, never
  promote — a short run proves nothing either way;
- ``rollback`` when the live Sharpe is more than ``sharpe_drop_fraction`` below the backtest's
  (``live < bt - fraction·|bt|``, so a backtest Sharpe ≤ 0 still needs a real drop) or the
  live MaxDD exceeds the backtest's by more than ``max_drawdown_rise``;
- ``hold`` otherwise.

A rollback goes through the Ops API's own path (:func:`mlcore.ops.rollback_model`, audited as
``ops.rollback``, serving told by hot swap) with actor ``system:feedback``. After
``max_in_a_row`` automatic rollbacks in a row (no person deployed or rolled back in between),
the next decay halts the book (soft halt: no new entries, exits go on) and pages instead: a
chain of bad versions is a person's problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from mlcore.config import AppConfig, AutoRollbackPolicy
from mlcore.errors import MlcoreError, Severity
from mlcore.registry import ActionResult, AuditEvent, ModelStatus, Registry, registry_for

log = logging.getLogger("mlcore.feedback")
ACTOR = "system:feedback"
CHANNEL = "#risk-alerts"


class LiveNumbers(Protocol):
    """What the verdict reads of the live performance since deployment."""

    @property
    def n_bars(self) -> int: ...
    @property
    def n_trades(self) -> int: ...
    @property
    def sharpe(self) -> float | None: ...
    @property
    def max_drawdown(self) -> float | None: ...


class BacktestNumbers(Protocol):
    """What the verdict reads of the deployed version's backtest."""

    @property
    def sharpe(self) -> float | None: ...
    @property
    def max_drawdown(self) -> float | None: ...


class RollbackVerdict(StrEnum):
    """What the check concluded."""

    HOLD = "hold"
    ROLLBACK = "rollback"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Decision:
    """A verdict and the reasons behind it, one line each."""

    verdict: RollbackVerdict
    reasons: tuple[str, ...]


def decide(live: LiveNumbers, bt: BacktestNumbers, policy: AutoRollbackPolicy) -> Decision:
    """The rollback verdict (see the module docstring)."""
    short = []
    if live.n_bars < policy.min_bars:
        short.append(f"{live.n_bars} live bars < min_bars {policy.min_bars}")
    if live.n_trades < policy.min_trades:
        short.append(f"{live.n_trades} closed trades < min_trades {policy.min_trades}")
    if short:
        return Decision(RollbackVerdict.INCONCLUSIVE, tuple(short))
    reasons = []
    if live.sharpe is not None and bt.sharpe is not None:
        floor = bt.sharpe - policy.sharpe_drop_fraction * abs(bt.sharpe)
        if live.sharpe < floor:
            reasons.append(
                f"live Sharpe {live.sharpe:.3f} < {floor:.3f} (backtest {bt.sharpe:.3f} "
                f"- {100 * policy.sharpe_drop_fraction:g}%)"
            )
    if live.max_drawdown is not None and bt.max_drawdown is not None:
        ceiling = bt.max_drawdown + policy.max_drawdown_rise
        if live.max_drawdown > ceiling:
            reasons.append(
                f"live MaxDD {100 * live.max_drawdown:.2f}% > {100 * ceiling:.2f}% (backtest "
                f"{100 * bt.max_drawdown:.2f}% + {100 * policy.max_drawdown_rise:g} points)"
            )
    if reasons:
        return Decision(RollbackVerdict.ROLLBACK, tuple(reasons))
    if live.sharpe is None or bt.sharpe is None:
        return Decision(RollbackVerdict.INCONCLUSIVE, ("no Sharpe to compare (live or backtest)",))
    return Decision(RollbackVerdict.HOLD, (f"live Sharpe {live.sharpe:.3f}, MaxDD within limits",))


def automatic_streak(registry: Registry) -> int:
    """Automatic rollbacks in a row: deployments by ``system:feedback`` since the last one made
    by anyone else."""
    streak = 0
    for change in registry.history():
        if change.event != AuditEvent.MODEL_STATUS or change.new_status != ModelStatus.DEPLOYED:
            continue
        streak = streak + 1 if change.actor == ACTOR else 0
    return streak


@dataclass(frozen=True)
class RollbackCheck:
    """What one automatic-rollback check did."""

    model_version: str | None
    decision: Decision
    action: str  # "none", "alerted", "rolled_back", "halted", "refused"
    detail: str = ""


def check_rollback(
    cfg: AppConfig,
    live_of: Callable[[str, datetime | None], LiveNumbers],
    backtest_of: Callable[[str], BacktestNumbers],
    *,
    registry: Registry | None = None,
) -> RollbackCheck:
    """Judge the deployed version on its live performance since it was deployed and act:
    roll back (the Ops API path), halt and page after too many in a row, or hold and alert on
    an inconclusive sample. Every verdict is one ``feedback.rollback_check`` audit row."""
    policy = cfg.runbook.auto_rollback
    reg = registry or registry_for(cfg)
    current = reg.deployed()
    if current is None:
        return RollbackCheck(
            None, Decision(RollbackVerdict.HOLD, ("no version is deployed",)), "none"
        )
    version = current.model_version
    decision = decide(live_of(version, current.deployed_at), backtest_of(version), policy)
    action, detail = "none", ""
    if decision.verdict is RollbackVerdict.INCONCLUSIVE:
        action = "alerted"
        why = "; ".join(decision.reasons)
        _alert(reg, "FEEDBACK_ROLLBACK_INCONCLUSIVE", Severity.WARNING,
               f"{version}: live sample too small to judge a rollback ({why}); holding, never "
               "promoting", version)  # fmt: skip
    elif decision.verdict is RollbackVerdict.ROLLBACK:
        action, detail = _act(cfg, reg, version, decision, policy)
    reg.record_action(
        "feedback.rollback_check", actor=ACTOR, role="system", reason="; ".join(decision.reasons),
        request_id=f"rollback-check:{version}:{datetime.now(UTC).isoformat()}", before=None,
        after={"verdict": decision.verdict.value, "action": action}, result=ActionResult.OK,
        details={"model_version": version, "detail": detail},
    )  # fmt: skip
    return RollbackCheck(version, decision, action, detail)


@dataclass(frozen=True)
class _NoBacktest:
    sharpe: float | None = None
    max_drawdown: float | None = None


def check_deployed(cfg: AppConfig, registry: Registry | None = None) -> RollbackCheck:
    """:func:`check_rollback` on the live trades (``core.live_trades``, the book since the
    deployment) and the version's own backtest record; no readable backtest: inconclusive."""
    from mlcore.feedback._kpis_live import backtest_reference, live_performance

    reg = registry or registry_for(cfg)

    def live_of(version: str, since: datetime | None) -> LiveNumbers:
        return live_performance(reg.engine, model_version=version, pair_id=None, since=since)

    def backtest_of(version: str) -> BacktestNumbers:
        try:
            return backtest_reference(cfg, version)
        except MlcoreError:
            return _NoBacktest()

    return check_rollback(cfg, live_of, backtest_of, registry=reg)


def _act(
    cfg: AppConfig, reg: Registry, version: str, decision: Decision, policy: AutoRollbackPolicy
) -> tuple[str, str]:
    from mlcore.ops import halt_book, rollback_model

    why = "; ".join(decision.reasons)
    streak = automatic_streak(reg)
    if streak >= policy.max_in_a_row:
        try:
            halt_book(cfg, reg, actor=ACTOR,
                      reason=f"{streak} automatic rollbacks in a row and {version} decays too: "
                      f"{why}")  # fmt: skip
        except MlcoreError as exc:
            detail = f"halt failed: {exc}"
        else:
            detail = "book soft-halted"
        _alert(reg, "FEEDBACK_ROLLBACK_LIMIT", Severity.CRITICAL,
               f"{version} decays ({why}) after {streak} automatic rollbacks in a row: "
               f"{detail}; a person must decide", version)  # fmt: skip
        return "halted", detail
    try:
        done = rollback_model(cfg, actor=ACTOR, role="system",
                              reason=f"automatic rollback: {why}")  # fmt: skip
    except (MlcoreError, ValueError, OSError) as exc:  # the deployed version's files unreadable
        _alert(reg, "FEEDBACK_ROLLBACK_REFUSED", Severity.CRITICAL,
               f"{version} decays ({why}) but the rollback was refused: {exc}",
               version)  # fmt: skip
        return "refused", str(exc)
    _alert(reg, "FEEDBACK_ROLLBACK_DONE", Severity.CRITICAL,
           f"{version} rolled back automatically ({why}); {done.model_after} is deployed",
           version)  # fmt: skip
    return "rolled_back", f"{done.model_before} -> {done.model_after}"


def _alert(reg: Registry, code: str, severity: Severity, message: str, version: str) -> None:
    log.warning("%s: %s", code, message)
    reg.raise_alert(code, message, channel=CHANNEL, severity=severity,
                    details={"model_version": version})  # fmt: skip
