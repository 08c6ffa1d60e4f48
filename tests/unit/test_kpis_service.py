"""The live KPIs' service and data-quality figures: a worker outbox's signals (with their
inference time) and dead letters (refused bar messages) go through serving's ``aggregate`` into
the registry, and ``compute_kpis`` counts them per pair (its legs), for the book and per window."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mlcore.cli._render import kpi_line
from mlcore.config import AppConfig
from mlcore.feedback import BOOK, compute_kpis, read_kpis
from mlcore.registry import bars_refused, database_url, make_engine, signals_live
from mlcore.serving import Outbox, aggregate
from mlcore.signals import encode_signal

from ._feedback_support import T0, register_version, signal

MS = 1_000_000


def _ns(hours: float) -> int:
    return int((T0 + timedelta(hours=hours)).timestamp()) * 10**9


def _dead(mid: str, reason: str, symbol: str | None, bar_h: float | None,
          at_h: float) -> tuple[object, ...]:  # fmt: skip
    bar = None if bar_h is None else _ns(bar_h)
    return (mid, "file:bars.jsonl", f"line {mid}", reason, f"{reason} detail", b"{raw}",
            _ns(at_h), symbol, bar)  # fmt: skip


def test_inference_time_and_refused_bars_reach_the_kpis(cfg: AppConfig, tmp_path: Path) -> None:
    check_service_kpis(cfg, database_url(cfg), tmp_path)


def check_service_kpis(cfg: AppConfig, url: str, tmp_path: Path) -> None:
    """Serve-side rows through aggregate() into the registry at ``url``, then the KPIs."""
    register_version(cfg, url)
    engine = make_engine(url)
    box = Outbox(tmp_path / "outbox" / "w0.db")
    sigs = [signal(bar=b, action="hold", reason="no_signal") for b in (0, 1, 2)]
    spent = [1 * MS, 5 * MS, 300 * MS]  # the last one over the 200 ms SLO
    rows = [(s["id"], s["pair_id"], _ns(i), encode_signal(s), 0, ns)
            for i, (s, ns) in enumerate(zip(sigs, spent, strict=True))]  # fmt: skip
    dead = [
        _dead("d1", "bad_print", "EUR/USD", 1, 1.1),
        _dead("d2", "future", "GBP/USD", 2, 2.1),
        _dead("d3", "json", None, None, 1.5),  # unparseable: placed when it was refused
        _dead("d4", "bad_print", "BTC/USD", 1, 1.2),  # another pair's leg
        _dead("d5", "bad_print", "EUR/USD", -24 * 200, 0.5),  # a bar 200 days old
    ]
    box.commit(rows, {}, {}, dead)
    assert aggregate(box, engine) == 3
    assert aggregate(box, engine) == 0  # each row once
    with engine.connect() as conn:
        got = dict(conn.execute(select(signals_live.c.signal_id,
                                       signals_live.c.inference_seconds)).all())  # fmt: skip
        refused = conn.execute(select(func.count()).select_from(bars_refused)).scalar()
    assert got == {s["id"]: ns / 1e9 for s, ns in zip(sigs, spent, strict=True)}
    assert refused == 5

    kpis = compute_kpis(cfg, engine, T0 + timedelta(days=1))
    pair7 = next(k for k in kpis if k.pair_id == "EUR_GBP" and k.window_days == 7)
    book7 = next(k for k in kpis if k.pair_id == BOOK and k.window_days == 7)
    slo = pair7.slo
    assert slo.inference_p50_seconds == pytest.approx(0.005)
    assert slo.inference_max_seconds == pytest.approx(0.3) and slo.inference_over_slo == 1
    assert slo.refused_bars == 2 and slo.refused_by_reason == {"bad_print": 1, "future": 1}
    assert book7.slo.refused_bars == 4  # every symbol, and the unparseable one
    assert book7.slo.refused_by_reason == {"bad_print": 2, "future": 1, "json": 1}
    assert all(k.slo.refused_bars == (2 if k.pair_id != BOOK else 4) for k in kpis)  # 200 days
    assert "(1 over the SLO), 2 bars refused;" in kpi_line(pair7)  # `mlcore kpis show`
    stored = {(k.pair_id, k.window_days): k.slo for k in read_kpis(engine)}
    assert stored[("EUR_GBP", 7)] == slo and stored[(BOOK, 7)] == book7.slo
    box.close()
    engine.dispose()


def test_an_outbox_of_an_older_release_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "w0.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE signals (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
        "pair_id TEXT NOT NULL, bar_ts_ns INTEGER NOT NULL, payload BLOB NOT NULL, "
        "delivered INTEGER NOT NULL DEFAULT 0, aggregated INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE dead_letters (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL "
        "UNIQUE, source TEXT NOT NULL, position TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT "
        "NOT NULL, raw BLOB NOT NULL, at_ns INTEGER NOT NULL, delivered INTEGER NOT NULL "
        "DEFAULT 0);"
        "INSERT INTO signals (id, pair_id, bar_ts_ns, payload) VALUES ('s1', 'P', 1, x'7b7d');"
        "INSERT INTO dead_letters (id, source, position, reason, detail, raw, at_ns) "
        "VALUES ('d1', 'f', '1', 'json', 'x', x'00', 5);"
    )
    old.close()
    box = Outbox(path)
    assert box.to_aggregate(10) == [(1, b"{}", None)]
    assert box.dead_to_aggregate(10) == [(1, "d1", "f", "1", "json", "x", 5, None, None)]
    box.mark_dead_aggregated(1)
    assert box.dead_to_aggregate(10) == []
    box.close()
