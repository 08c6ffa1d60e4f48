"""The drawdown guard: the book over every pair's latest equity, crossings applied once and kept
while the flags store or the database is away, the flags they set (file store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlcore.registry import Alerts, Registry, make_engine, upgrade
from mlcore.serving._dd_guard import (
    DDGuard,
    EquityLedger,
    crossing_effects,
    flags_change,
)
from mlcore.serving._drawdown import BookDrawdown, DrawdownLimits, PairStep
from mlcore.serving._flags import NO_FLAGS, FlagStore, OpsFlags, flags_json, parse_flags

PAIRS = ["A_B", "C_D", "E_F"]


def _guard(tmp: Path, worker: str, apply: Any) -> DDGuard:
    ledger = EquityLedger(None, "", tmp / "dd_equity", worker)
    book = BookDrawdown(3000.0, DrawdownLimits(0.01, 0.02, 0.04, 10))
    return DDGuard(worker, dict.fromkeys(PAIRS, 1000.0), book, ledger, apply)


def test_the_book_sums_every_pairs_latest_equity(tmp_path: Path) -> None:
    other = _guard(tmp_path, "w1", lambda c: None)
    other.ledger.publish({"E_F": (5, 970.0)})
    done: list[dict] = []
    g = _guard(tmp_path, "w0", done.append)
    g.refresh()
    # A_B and C_D here, E_F as w1 published it: 1000 + 1000 + 970 = 2970, 1% down: a warn.
    step = g.at(10, {"A_B": 1000.0, "C_D": 1000.0})
    assert step.equity == pytest.approx(2970.0) and step.events == ("warn",)
    step = g.at(11, {"A_B": 990.0, "C_D": 980.0})  # 2940: 2% down, halted
    assert step.control == 1.0 and step.events == ("halt",)
    assert g.at(11, {"A_B": 0.0}).control == 1.0  # the same bar time again: nothing new
    g.flush()
    assert [(c["event"], c["pair_id"]) for c in done] == [("warn", None), ("halt", None)]
    # Another worker's unpublished pair counts its capital; a damaged ledger file is left out.
    (tmp_path / "dd_equity" / "w9.json").write_text("{not json")
    g.refresh()
    assert g.at(12, {}).equity == pytest.approx(2970.0)


def test_a_crossing_not_applied_is_kept_and_retried_across_a_restart(tmp_path: Path) -> None:
    calls: list[str] = []

    def away(c: dict) -> None:
        calls.append(c["event"])
        raise ConnectionError("store away")

    g = _guard(tmp_path, "w0", away)
    step = PairStep(950.0, 1000.0, 0.05, 3, True, "dd_flatten", ("halt", "flatten"))
    g.pair("A_B", 7, step)
    g.flush()
    g.flush()
    assert calls == ["halt", "halt"] and len(g.pending) == 2  # in order, the first retried
    done: list[dict] = []
    again = _guard(tmp_path, "w0", done.append)
    again.restore(json.loads(g.state()))
    again.flush()
    assert [c["event"] for c in done] == ["halt", "flatten"] and not again.pending
    assert done[0]["bar_ts_ns"] == 7 and done[0]["pair_id"] == "A_B"


def test_crossings_set_the_flags_and_raise_alerts(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'reg.db'}")
    upgrade(db)
    path = tmp_path / "ops_flags.json"
    path.write_text(flags_json(OpsFlags(halted_pairs=frozenset({"C_D"}))))
    apply = crossing_effects(FlagStore(None, "", path), db)
    base = {"pair_id": "A_B", "bar_ts_ns": 1, "drawdown": 0.07, "equity": 930.0,
            "peak": 1000.0, "worker": "w0"}  # fmt: skip
    for event in ("warn", "halt", "flatten"):
        apply(base | {"event": event})
    flags = parse_flags(path.read_bytes(), "test")
    assert flags.halted_pairs == {"A_B", "C_D"} and flags.flatten_pairs == {"A_B"}
    assert not flags.global_halt
    apply(base | {"event": "halt", "pair_id": None})
    assert parse_flags(path.read_bytes(), "test").global_halt
    codes = [a.code for a in Alerts(db).recent()]
    assert sorted(codes) == sorted(["CORE_DD_WARN", "CORE_DD_HALT", "CORE_DD_FLATTEN",
                                    "CORE_DD_HALT"])  # fmt: skip
    rows = Registry(db).actions()
    assert [r.action for r in rows] == ["dd.warn", "dd.halt", "dd.flatten", "dd.halt"]
    halt = rows[1]
    assert (halt.actor, halt.role, halt.result) == ("system:dd", "system", "ok")
    assert halt.before is not None and halt.after is not None
    assert "A_B" not in halt.before["halted_pairs"] and "A_B" in halt.after["halted_pairs"]
    assert halt.after["seq"] == halt.before["seq"] + 1
    # A damaged flags document is not overwritten: the crossing fails (and is kept).
    path.write_text('{"global_halt": "yes"}')
    with pytest.raises(ValueError, match="global_halt"):
        apply(base | {"event": "halt"})
    assert path.read_text() == '{"global_halt": "yes"}'


def test_a_book_flatten_flattens_every_pair() -> None:
    after = flags_change({"event": "flatten", "pair_id": None})(NO_FLAGS)
    assert after.global_halt and after.flatten_all
    assert flags_change({"event": "warn", "pair_id": "A_B"})(NO_FLAGS) == NO_FLAGS
