"""The feedback loop's automatic rollback on real model versions (the demo's, copied as A and
B): B is deployed over A and serves; its fills come back with a planted decay (every exit filled
3% of its notional worse). An undersized sample only alerts; past the minimum sample the check
rolls B back to A through the Ops API's path, audited and paged."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert, select, update

from mlcore.config import AppConfig, load_config
from mlcore.demo import DemoResult
from mlcore.feedback import (
    FillAction,
    check_deployed,
    fill_folders,
    ingest_folder,
    live_performance,
    served_signals,
    simulate_fills,
    write_fill_files,
)
from mlcore.feedback._autorollback import ACTOR, RollbackVerdict
from mlcore.registry import (
    Registry,
    database_url,
    make_engine,
    model_registry,
    registry_for,
    signals_live,
)
from tests.conftest import config_with
from tests.e2e.conftest import linked_archive

BT = {"sharpe": 1.5, "max_drawdown": 0.05, "win_rate": 0.6, "trades_per_year": 200.0}


def _later(version: str) -> str:
    day, hm, code = version.split("_")[:3]
    m = int(hm[:2]) * 60 + int(hm[2:]) + 1
    return f"{day}_{m // 60 % 24:02d}{m % 60:02d}_{code}"


def _other_id(signal_id: str) -> str:
    """Another id of the same form (hex digits, same length) for B's copy of a signal."""
    return hashlib.sha256(f"B:{signal_id}".encode()).hexdigest()[: len(signal_id)]


def _deploy(reg: Registry, folder: Path, theta: tuple[float, float]) -> None:
    reg.register(folder, actor="test", notes="feedback rollback test")
    for to in ("candidate", "approved", "deployed"):
        reg.transition(folder.name, to, actor="test", notes="feedback rollback test",
                       theta=theta if to == "deployed" else None)  # fmt: skip


@pytest.fixture
def two_versions(
    demo_run: tuple[AppConfig, DemoResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str, str]:
    """An archive of its own (the demo's data layers linked) with A deployed, then B over it,
    and B's served signals: the demo replay's, as B served them."""
    demo, result = demo_run
    assert result.training is not None
    archive = linked_archive(demo, tmp_path)
    monkeypatch.setenv("ARCHIVE_PATH", str(archive))
    cfg = load_config(config_with(tmp_path / "small", {}), "dev")
    a = result.training.folder.name
    b = _later(a)
    for name in (a, b):
        shutil.copytree(result.training.folder, cfg.paths.models / name)
    reg = registry_for(cfg)
    _deploy(reg, cfg.paths.models / a, (0.6, 0.3))
    _deploy(reg, cfg.paths.models / b, (0.6, 0.3))
    record = cfg.paths.reports / "backtest" / b / "backtest.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"test": BT}))
    demo_engine = make_engine(database_url(demo))
    with demo_engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(signals_live)).mappings()]
    assert rows, "the demo served no signals"
    first = min(pd.Timestamp(r["ts"]) for r in rows)
    first = first.tz_localize("UTC") if first.tzinfo is None else first
    with reg.engine.begin() as conn:
        conn.execute(insert(signals_live), [
            r | {"signal_id": _other_id(r["signal_id"]), "model_version": b} for r in rows
        ])  # fmt: skip
        # The replay's bars are of 2024: B is taken as deployed just before them (and A a
        # year earlier), so "since its deployment" covers what it served.
        for name, at in ((a, first - pd.Timedelta(days=365)), (b, first - pd.Timedelta(hours=1))):
            conn.execute(update(model_registry).where(model_registry.c.model_version == name)
                         .values(deployed_at=at.to_pydatetime()))  # fmt: skip
    return tmp_path, a, b


def _planted_decay(cfg: AppConfig, version: str) -> int:
    """Fill B's entries and exits as the simulator does, but every exit 3% of each leg's
    notional against the position; drop them for the ingest; returns how many fills."""
    engine = registry_for(cfg).engine
    fills = simulate_fills(served_signals(engine, model_version=version), cfg.costs,
                           cfg.analytics.fills.simulate)  # fmt: skip
    bad = []
    for f in fills:
        if f.action is FillAction.EXIT:
            legs = tuple(replace(leg, price=leg.price * (1.03 if leg.sign > 0 else 0.97))
                         for leg in f.legs)  # fmt: skip
            f = replace(f, legs=legs)
        bad.append(f)
    return write_fill_files(fill_folders(cfg)[0], bad)


def test_a_planted_decay_rolls_back_and_an_undersized_sample_does_not(
    two_versions: tuple[Path, str, str],
) -> None:
    tmp, a, b = two_versions
    cfg = load_config(tmp / "small" / "configs", "dev")
    assert _planted_decay(cfg, b) > 0
    counts = ingest_folder(cfg, registry_for(cfg).engine)
    assert counts.new > 0 and counts.quarantined == 0
    reg = registry_for(cfg)
    live = live_performance(reg.engine, model_version=b, pair_id=None,
                            since=reg.get(b).deployed_at)  # fmt: skip
    assert live.n_trades >= 1 and live.pnl_usd < 0

    # The shipped minimum sample (500 bars, 30 trades): inconclusive, B stays, an alert.
    small = check_deployed(cfg)
    assert small.decision.verdict is RollbackVerdict.INCONCLUSIVE, small
    assert reg.deployed().model_version == b  # type: ignore[union-attr]
    assert reg.alerts("FEEDBACK_ROLLBACK_INCONCLUSIVE")

    # A minimum this replay meets: the decay rolls B back to A, as POST /ops/rollback would.
    root = config_with(tmp / "big", {"runbook_policy": {"auto_rollback": {
        "min_bars": 10, "min_trades": 1}}})  # fmt: skip
    done = check_deployed(load_config(root, "dev"))
    assert done.decision.verdict is RollbackVerdict.ROLLBACK, done
    assert done.action == "rolled_back" and done.detail == f"{b} -> {a}"
    assert reg.deployed().model_version == a  # type: ignore[union-attr]
    row = reg.actions(action="ops.rollback")[-1]
    assert row.actor == ACTOR and row.result == "ok"
    assert row.after["model_version"] == a  # type: ignore[index]
    alert = reg.alerts("FEEDBACK_ROLLBACK_DONE")[0]
    assert alert.severity == "critical"
    served = json.loads((cfg.paths.archive / "serving" / "deployed.json").read_text())
    assert served["model_version"] == a  # serving told (hot swap)
