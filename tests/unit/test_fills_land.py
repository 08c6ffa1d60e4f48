"""Fills landing in a fresh SQLite registry: linked to their signal, idempotent by fill id,
every hostile case quarantined with its reason; the drop folder run twice (or after a kill
between commit and move) adds nothing; simulated fills are deterministic and close trades."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from mlcore.config import AppConfig
from mlcore.feedback import (
    FillSource,
    Landed,
    Reason,
    fill_folders,
    ingest_folder,
    land_fill,
    land_rules,
    read_quarantine,
    read_trades,
    served_signals,
    simulate_fills,
    summarize_costs,
    write_fill_files,
)
from mlcore.registry import (
    Alerts,
    database_url,
    fills_quarantine,
    live_trades,
    make_engine,
    upgrade,
)

from ._feedback_support import fill_doc, signal, store

NOW = datetime(2025, 1, 7, tzinfo=UTC)


@pytest.fixture
def engine(cfg: AppConfig) -> Engine:
    db = make_engine(database_url(cfg))
    upgrade(db)
    return db


def _land(cfg: AppConfig, engine: Engine, doc: object, where: str = "t") -> tuple[Landed, object]:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return land_fill(engine, raw, FillSource.FILE, where, land_rules(cfg), NOW)


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_entry_then_exit_gives_the_pnl(cfg: AppConfig, engine: Engine) -> None:
    entry = signal(bar=0, prices=(1.10, 1.30))
    exit_ = signal(bar=5, action="exit", side=-1, prices=(1.12, 1.29))
    store(engine, entry, exit_)
    assert (
        _land(cfg, engine, fill_doc(entry, fill_id="A", prices=(1.1001, 1.2998)))[0] == Landed.NEW
    )
    assert _land(cfg, engine, fill_doc(exit_, fill_id="B"))[0] == Landed.NEW
    trades = read_trades(engine)
    assert [t.fill_id for t in trades] == ["A", "B"]
    a, b = trades
    # Bought 10,000 A at 1.1001, sold 8,000 B at 1.2998; closed at 1.12 / 1.29; 0.5 fee a leg.
    want = 10_000 * (1.12 - 1.1001) - 8_000 * (1.29 - 1.2998) - 4 * 0.5
    assert b.entry_fill_id == "A" and b.pnl_usd == pytest.approx(want)
    assert a.pnl_usd is None
    # Slippage against the bar close: 0.0001 on the buy, 0.0002 on the sell (both worse).
    assert a.legs[0].slippage_bps == pytest.approx(0.0001 / 1.10 * 1e4, rel=1e-6)
    assert a.legs[1].slippage_bps == pytest.approx(0.0002 / 1.30 * 1e4, rel=1e-6)
    assert a.cost_usd == pytest.approx(1.0 + 10_000 * 0.0001 + 8_000 * 0.0002)
    assert a.expected_cost_usd == pytest.approx((11_000 + 10_400) * 1.5e-4)
    assert summarize_costs(trades).fills == 2


def test_a_fill_lands_once(cfg: AppConfig, engine: Engine) -> None:
    sig = signal()
    store(engine, sig)
    doc = fill_doc(sig)
    assert _land(cfg, engine, doc)[0] == Landed.NEW
    assert _land(cfg, engine, doc)[0] == Landed.DUPLICATE
    other = fill_doc(sig, prices=(1.2, 1.3))
    landed, bad = _land(cfg, engine, other)
    assert landed == Landed.QUARANTINED and bad.reason == Reason.DUPLICATE_CONFLICT  # type: ignore[attr-defined]
    assert _count(engine, live_trades) == 1


def _shifted(doc: dict[str, object], seconds: float) -> dict[str, object]:
    at = datetime.fromisoformat(str(doc["filled_at"]).replace("Z", "+00:00"))
    return doc | {"filled_at": (at + timedelta(seconds=seconds)).isoformat()}


def test_each_hostile_fill_is_quarantined_with_its_reason(cfg: AppConfig, engine: Engine) -> None:
    sig = signal()
    store(engine, sig)
    good = fill_doc(sig)
    cases = {
        "orphan": good | {"signal_id": "f" * 32},
        "future_fill": good | {"filled_at": (NOW + timedelta(minutes=5)).isoformat()},
        "before_signal": _shifted(good, -60),
        "side_mismatch": good | {"side": -1},
        "signal_mismatch": good | {"action": "exit"},
        "unknown_pair": good | {"pair_id": "USD_JPY"},
        "bad_number": good | {"legs": [good["legs"][0] | {"price": -1}, good["legs"][1]]},
        "bad_json": b"{",
        "not_utf8": b"\xc3\x28",
        "too_large": b"{" + b" " * 70_000 + b"}",
    }
    for i, (reason, doc) in enumerate(cases.items()):
        landed, bad = _land(cfg, engine, doc, where=f"case{i}")
        assert landed == Landed.QUARANTINED and str(bad.reason) == reason, (reason, bad)  # type: ignore[attr-defined]
    assert _count(engine, live_trades) == 0
    got = {q.reason for q in read_quarantine(engine)}
    assert got == set(cases)
    # Seen again from the same place: quarantined once.
    _land(cfg, engine, cases["orphan"], where="case0")
    assert _count(engine, fills_quarantine) == len(cases)


def test_the_drop_folder_run_twice_adds_nothing(cfg: AppConfig, engine: Engine) -> None:
    sigs = [signal(bar=0), signal(bar=3, action="exit", side=-1, prices=(1.11, 1.31))]
    store(engine, *sigs)
    drop, done, quarantine = fill_folders(cfg)
    for i, s in enumerate(sigs):
        (drop / f"f{i}").mkdir(parents=True)
        (drop / f"f{i}" / "result.json").write_text(json.dumps(fill_doc(s, fill_id=f"F{i}")))
    (drop / "bad").mkdir()
    (drop / "bad" / "result.json").write_bytes(b"\x00\xff garbage")
    (drop / ".result.json.tmp").write_text("half written")  # an executor still writing
    first = ingest_folder(cfg, engine, clock=lambda: NOW)
    assert (first.new, first.duplicate, first.quarantined) == (2, 0, 1)
    assert len(list(done.rglob("*.json"))) == 2 and len(list(quarantine.rglob("*.json"))) == 1
    assert (drop / ".result.json.tmp").exists()
    alerts = Alerts(engine).recent("FEEDBACK_FILL_QUARANTINED")
    assert len(alerts) == 1 and "not_utf8 1" in alerts[0].message
    # A kill between the commit and the move leaves the file in place: put one back.
    moved = next(done.rglob("*.json"))
    (drop / "again.json").write_bytes(moved.read_bytes())
    again = ingest_folder(cfg, engine, clock=lambda: NOW)
    assert (again.new, again.duplicate, again.quarantined) == (0, 1, 0)
    assert _count(engine, live_trades) == 2 and _count(engine, fills_quarantine) == 1
    assert ingest_folder(cfg, engine, clock=lambda: NOW).new == 0


def test_a_symlink_in_the_drop_folder_is_quarantined(
    cfg: AppConfig, engine: Engine, tmp_path: Path
) -> None:
    drop, _, quarantine = fill_folders(cfg)
    drop.mkdir(parents=True)
    (drop / "x.json").symlink_to(tmp_path / "elsewhere.json")
    counts = ingest_folder(cfg, engine, clock=lambda: NOW)
    assert counts.reasons == {"not_a_file": 1}
    assert list(quarantine.rglob("*.json"))


def test_simulated_fills_are_deterministic_and_land(cfg: AppConfig, engine: Engine) -> None:
    sigs = [signal(bar=0), signal(bar=1, action="hold"),
            signal(bar=4, action="exit", side=-1, prices=(1.12, 1.30)),
            signal("XAU_XAG", bar=2, prices=(2600.0, 31.0), units=(10, 700))]  # fmt: skip
    store(engine, *sigs)
    served = served_signals(engine)
    assert len(served) == 3  # the hold is no order
    policy = cfg.analytics.fills.simulate
    fills = simulate_fills(served, cfg.costs, policy)
    assert fills == simulate_fills(served, cfg.costs, policy)
    assert fills[:1] == simulate_fills(served[:1], cfg.costs, policy)
    reseeded = simulate_fills(
        served, cfg.costs, policy.model_copy(update={"seed": policy.seed + 1})
    )
    assert [f.legs for f in reseeded] != [f.legs for f in fills]
    drop, _, _ = fill_folders(cfg)
    write_fill_files(drop, fills)
    counts = ingest_folder(cfg, engine, clock=lambda: NOW)
    assert (counts.new, counts.quarantined) == (3, 0)
    write_fill_files(drop, fills)
    assert ingest_folder(cfg, engine, clock=lambda: NOW).new == 0
    trades = read_trades(engine)
    closed = [t for t in trades if t.pnl_usd is not None]
    assert len(closed) == 1 and closed[0].pair_id == "EUR_GBP"


def test_an_exit_landed_before_its_entry_gets_its_pnl(cfg: AppConfig, engine: Engine) -> None:
    entry = signal(bar=0, prices=(1.10, 1.30))
    exit_ = signal(bar=5, action="exit", side=-1, prices=(1.12, 1.30))
    store(engine, entry, exit_)
    _land(cfg, engine, fill_doc(exit_, fill_id="X"))
    assert read_trades(engine)[0].pnl_usd is None
    _land(cfg, engine, fill_doc(entry, fill_id="E"))
    closed = {t.fill_id: t for t in read_trades(engine)}["X"]
    assert closed.entry_fill_id == "E" and closed.pnl_usd == pytest.approx(200.0 - 2.0)


def test_an_unreadable_file_is_quarantined(
    cfg: AppConfig, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop, _, quarantine = fill_folders(cfg)
    drop.mkdir(parents=True)
    locked = drop / "locked.json"
    locked.write_text("{}")
    real_open = Path.open

    def refusing_open(self: Path, *args: object, **kwargs: object) -> object:
        # The tests run as root here, whom chmod 0 does not stop: the EACCES is injected.
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refusing_open)
    counts = ingest_folder(cfg, engine, clock=lambda: NOW)
    assert counts.reasons == {"unreadable": 1}
    assert list(quarantine.rglob("locked*.json"))
