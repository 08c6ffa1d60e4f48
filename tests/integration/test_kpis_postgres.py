"""Live trades and KPIs on a real PostgreSQL registry: the same numbers as on SQLite."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlcore.config import AppConfig
from mlcore.feedback import (
    BOOK,
    FillSource,
    compute_kpis,
    land_fill,
    land_rules,
    live_performance,
    read_kpis,
)
from mlcore.registry import make_engine
from tests.conftest import postgres_url
from tests.unit._feedback_support import VERSION, fill_doc, register_version, signal, store
from tests.unit.test_kpis_service import check_service_kpis


def test_kpis_on_postgresql(cfg: AppConfig) -> None:
    for url in postgres_url():
        register_version(cfg, url)
        engine = make_engine(url)
        sigs = [signal(bar=0), signal(bar=3, action="exit", side=-1, prices=(1.12, 1.30)),
                signal("XAU_XAG", bar=1, prices=(2600.0, 31.0), units=(10, 700))]  # fmt: skip
        store(engine, *sigs)
        now = datetime(2025, 1, 9, tzinfo=UTC)
        for i, s in enumerate(sigs):
            raw = json.dumps(fill_doc(s, fill_id=f"P{i}")).encode()
            land_fill(engine, raw, FillSource.STREAM, f"s{i}", land_rules(cfg), now)
        perf = live_performance(engine, model_version=VERSION, pair_id=None, since=None)
        assert (perf.n_trades, perf.n_bars) == (1, 3)
        assert perf.pnl_usd == pytest.approx(198.0) and perf.win_rate == 1.0
        kpis = compute_kpis(cfg, engine, now)
        assert len(kpis) == 3 * len(cfg.analytics.kpi.windows_days)
        book = [k for k in read_kpis(engine) if k.pair_id == BOOK]
        assert {k.trades.n_trades for k in book} == {1}
        engine.dispose()


def test_inference_time_and_refused_bars_on_postgresql(cfg: AppConfig, tmp_path: Path) -> None:
    for url in postgres_url():
        check_service_kpis(cfg, url, tmp_path)
