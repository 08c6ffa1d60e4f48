"""The demo ends with the feedback loop on its replay: every served entry and exit signal is
filled (simulated), lands once in core.live_trades, and the live KPIs are stored."""

from __future__ import annotations

from mlcore.config import AppConfig
from mlcore.demo import DemoResult
from mlcore.feedback import ingest_folder, read_kpis, read_trades
from mlcore.registry import database_url, make_engine


def test_the_demo_ends_with_the_feedback_loop(demo_run: tuple[AppConfig, DemoResult]) -> None:
    cfg, result = demo_run
    f = result.feedback
    assert f is not None and result.serving is not None
    assert f.signals > 0 and f.fills == f.signals == f.new_trades == f.live_trades
    assert f.quarantined == 0 and f.kpis_skipped == ""
    assert 0 < f.closed_trades <= f.live_trades // 2 + 1
    engine = make_engine(database_url(cfg))
    trades = read_trades(engine)
    assert len(trades) == f.live_trades
    assert sum(t.pnl_usd for t in trades if t.pnl_usd is not None) == f.pnl_usd
    book = [k for k in read_kpis(engine) if k.pair_id == "*"]
    assert {k.window_days for k in book} == set(cfg.analytics.kpi.windows_days)
    assert all(k.trades.n_bars > 0 for k in book)
    # Every served signal carries its worker's inference time; the replay refused no bar.
    slo = [k.slo for k in book]
    assert all(s.inference_p50_seconds is not None and s.inference_max_seconds is not None
               and 0 < s.inference_p50_seconds <= s.inference_max_seconds for s in slo)  # fmt: skip
    assert all(s.refused_bars == 0 for s in slo)  # the replay's bars are clean
    assert ingest_folder(cfg, engine).new == 0  # the loop again adds nothing
