"""`mlcore fills simulate | ingest | show | report` and `mlcore kpis compute | show` on the
embedded default: served signals become simulated fills, live trades and stored KPIs; a
hostile file in the drop folder is quarantined; a second ingest adds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.cli._render import print_feedback
from mlcore.config import AppConfig
from mlcore.demo import record_replay
from mlcore.feedback import fill_folders, loop_dict, loop_once, read_trades
from mlcore.registry import database_url, make_engine
from mlcore.serving import Outbox
from mlcore.signals import encode_signal

from ._feedback_support import register_version, signal, store

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_the_loop_from_signals_to_kpis(cfg: AppConfig) -> None:
    url = database_url(cfg)
    register_version(cfg, url)
    engine = make_engine(url)
    store(engine, signal(bar=0), signal(bar=1, action="hold"),
          signal(bar=6, action="exit", side=-1, prices=(1.12, 1.31)),
          signal("XAU_XAG", bar=2, prices=(2600.0, 31.0), units=(10, 700)))  # fmt: skip
    code, out = _run("fills", "simulate")
    assert code == 0, out
    assert "3 fills of 3 entry/exit signals" in out
    drop = fill_folders(cfg)[0]
    (drop / "hostile").mkdir()
    (drop / "hostile" / "result.json").write_bytes(b'{"schema": "mlcore.fill.v1", "qty": NaN')
    code, out = _run("fills", "ingest")
    assert code == 0, out
    assert "3 new live trades, 0 already there, 1 quarantined (bad_number 1)" in out
    code, out = _run("fills", "ingest")
    assert "0 new live trades, 0 already there, 0 quarantined" in out
    assert len(read_trades(engine)) == 3
    code, out = _run("fills", "show")
    assert code == 0 and "quarantined fills (1 newest)" in out and "bad_number" in out, out
    code, out = _run("fills", "report")
    assert code == 0 and "all: 3 fills" in out, out
    code, out = _run("kpis", "compute")
    assert code == 0, out
    assert f"{3 * len(cfg.analytics.kpi.windows_days)} KPI rows stored" in out
    code, out = _run("kpis", "show")
    assert code == 0 and "EUR_GBP" in out and "1 trades" in out, out


def test_the_stream_needs_redis_url(cfg: AppConfig) -> None:
    code, out = _run("fills", "ingest", "--no-files", "--stream")
    assert code == 2 and "FEEDBACK_REDIS_MISSING" in out, out


def test_the_demo_loop_once(cfg: AppConfig, capsys: pytest.CaptureFixture[str]) -> None:
    url = database_url(cfg)
    register_version(cfg, url)
    store(make_engine(url), signal(bar=0), signal(bar=3, action="exit", side=-1))
    summary = loop_once(cfg, make_engine(url))
    assert (summary.signals, summary.fills, summary.new_trades, summary.closed_trades) == (
        2,
        2,
        2,
        1,
    )
    assert summary.kpis_skipped == "" and {k.pair_id for k in summary.kpis} == {"*"}
    assert loop_dict(summary)["live_trades"] == 2
    print_feedback(summary)
    assert "2 simulated fills of 2 served entry/exit signals" in capsys.readouterr().out


def test_a_replays_outbox_is_recorded_for_the_loop(cfg: AppConfig, tmp_path: Path) -> None:
    url = database_url(cfg)
    register_version(cfg, url)
    sigs = [signal(bar=0), signal(bar=3, action="exit", side=-1), signal(bar=4, action="hold")]
    (tmp_path / "outbox").mkdir()
    box = Outbox(tmp_path / "outbox" / "worker-0.db")
    box.commit([(s["id"], s["pair_id"], i, encode_signal(s), 0) for i, s in enumerate(sigs)],
               {}, {})  # fmt: skip
    box.close()
    assert record_replay(cfg, tmp_path) == 3
    assert record_replay(cfg, tmp_path) == 0  # recorded once
    summary = loop_once(cfg, make_engine(url))
    assert (summary.signals, summary.new_trades, summary.closed_trades) == (2, 2, 1)
