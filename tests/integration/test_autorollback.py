"""The automatic rollback's edge on the embedded registry: an undersized sample only alerts, a
refused rollback pages, and after max_in_a_row automatic rollbacks the book is halted instead
(flags written, audited, paged). The rollback itself on real model versions is in
tests/e2e/test_feedback_loop.py."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from mlcore.config import AppConfig
from mlcore.feedback._autorollback import ACTOR, RollbackVerdict, automatic_streak, check_rollback
from mlcore.registry import registry_for
from mlcore.serving import flag_store, read_flags
from tests._rollback_doubles import Bt, Live
from tests.conftest import make_version

BT = Bt(1.5, 0.08)
DECAYED = Live(800, 60, 0.2, 0.25)


def _two_deployed(cfg: AppConfig, tmp_path: Path) -> tuple[str, str]:
    reg = registry_for(cfg)
    names = ("20250101_0000_abc1234", "20250102_0000_abc1234")
    for name in names:
        reg.register(make_version(tmp_path / "models", name), actor="test", notes="n")
        for to in ("candidate", "approved", "deployed"):
            reg.transition(name, to, actor="test", notes="n")
    return names


def test_an_undersized_sample_alerts_and_changes_nothing(cfg: AppConfig, tmp_path: Path) -> None:
    _, b = _two_deployed(cfg, tmp_path)
    seen: list[tuple[str, datetime | None]] = []

    def live(version: str, since: datetime | None) -> Live:
        seen.append((version, since))
        return Live(100, 5, -5.0, 0.9)  # awful, but 100 bars and 5 trades prove nothing

    out = check_rollback(cfg, live, lambda v: BT)
    reg = registry_for(cfg)
    assert out.decision.verdict is RollbackVerdict.INCONCLUSIVE and out.action == "alerted"
    assert reg.deployed().model_version == b  # type: ignore[union-attr]
    assert seen == [(b, reg.get(b).deployed_at)]  # judged since its deployment
    assert [x.code for x in reg.alerts()] == ["FEEDBACK_ROLLBACK_INCONCLUSIVE"]
    rows = reg.actions(action="feedback.rollback_check")
    assert rows[-1].after == {"verdict": "inconclusive", "action": "alerted"}
    assert not reg.actions(action="ops.rollback")


def test_a_rollback_that_is_refused_pages(cfg: AppConfig, tmp_path: Path) -> None:
    _, b = _two_deployed(cfg, tmp_path)  # stand-in model files: the target cannot be served
    out = check_rollback(cfg, lambda v, s: DECAYED, lambda v: BT)
    reg = registry_for(cfg)
    assert out.action == "refused" and "OPS_ROLLBACK_CURRENT_UNREADABLE" in out.detail
    assert reg.deployed().model_version == b  # type: ignore[union-attr]
    alert = reg.alerts("FEEDBACK_ROLLBACK_REFUSED")[0]
    assert alert.severity == "critical"
    assert reg.actions(action="ops.rollback")[-1].result == "refused"


def test_after_three_automatic_rollbacks_the_book_is_halted(cfg: AppConfig, tmp_path: Path) -> None:
    a, b = _two_deployed(cfg, tmp_path)
    reg = registry_for(cfg)
    for name in (a, b, a):  # three deployments by the automatic rollback, in a row
        reg.transition(name, "deployed", actor=ACTOR, notes="automatic rollback")
    assert automatic_streak(reg) == 3
    assert not read_flags(flag_store(cfg)).global_halt
    out = check_rollback(cfg, lambda v, s: DECAYED, lambda v: BT)
    assert out.action == "halted" and out.detail == "book soft-halted"
    assert read_flags(flag_store(cfg)).global_halt
    halt = reg.actions(action="ops.halt")[-1]
    assert halt.actor == ACTOR and halt.after["global_halt"] is True  # type: ignore[index]
    assert reg.alerts("FEEDBACK_ROLLBACK_LIMIT")[0].severity == "critical"
    assert not reg.actions(action="ops.rollback")  # no fourth rollback
    # A person's deployment ends the streak.
    reg.transition(b, "deployed", actor="alice", notes="fixed")
    assert automatic_streak(reg) == 0
    assert json.dumps(out.decision.reasons)  # the reasons are plain text
