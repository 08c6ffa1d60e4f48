"""Live drawdown protection against the backtest: a version whose dd_policy is tight enough that
the replayed path crosses every level, served by a real worker process with real Redis; the
backtest of the same bars with the model outputs the worker emitted warns, halts and flattens
each pair, and stops the book, on the bars the worker did."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from mlcore.backtest._inputs import PairBars
from mlcore.backtest._portfolio import account_path, account_rules, pair_setups, run_portfolio
from mlcore.config import AppConfig, load_config
from mlcore.demo import DemoResult
from mlcore.execution import DECISION_RECORD, read_params, record_bytes, slippage_factors
from mlcore.execution import version_config as versioned
from mlcore.registry import Alerts, Registry, database_url, make_engine
from mlcore.serving import (
    Outbox,
    Supervisor,
    Worker,
    WorkerSpec,
    bar_message,
    replay_bars,
    write_bars_file,
)
from mlcore.serving._flags import parse_flags
from tests.conftest import config_with, redis_url
from tests.e2e.test_serving import _copy_with_record

REPLAY = 700
THETA = (0.5, 0.6)  # loose: many entries, so the path has losing trades
PAIR = {"warn": 0.003, "halt": 0.005, "flatten": 0.008}
BOOK = {"warn": 0.002, "halt": 0.004, "flatten": 0.006}
HOUR = 3_600_000_000_000


@pytest.fixture(scope="module")
def served(
    demo_run: tuple[AppConfig, DemoResult], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    cfg0, result = demo_run
    assert result.training is not None
    tmp = tmp_path_factory.mktemp("dd")
    doc = json.loads((result.training.folder / DECISION_RECORD).read_bytes())
    doc["drawdown"] = {"pair": PAIR, "portfolio": BOOK}
    doc["execution"]["halt_review_bars"] = 100_000  # no review inside the replay
    folder = _copy_with_record(result.training.folder, tmp / "v" / result.training.folder.name,
                               record_bytes(doc))  # fmt: skip
    url = redis_url()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REDIS_URL", url)
        mp.setenv("ARCHIVE_PATH", str(cfg0.paths.archive))
        mp.setenv("TZ", "UTC")
        cfg, tag = _config(tmp)
        pairs = tuple(p.pair_id for p in cfg.universe.pairs)
        bars, warm = replay_bars(cfg, list(pairs), REPLAY)
        write_bars_file(tmp / "bars.jsonl", bars)
        spec = WorkerSpec("dd-worker", pairs, str(cfg.config_root), cfg.env_name, str(folder),
                          THETA, replay=True, warm_until_ns=warm, exit_when_idle_seconds=1.0,
                          root=str(tmp / "serving"), bars_file=str(tmp / "bars.jsonl"))  # fmt: skip
        sup = Supervisor(cfg, [spec])
        deadline = time.monotonic() + 600
        sup.run(lambda: time.monotonic() > deadline)
        client = redis.Redis.from_url(url)
        yield {"cfg": cfg, "folder": folder, "bars": bars, "spec": spec, "client": client,
               **_outcome(cfg, tmp, tag, spec.worker_id)}  # fmt: skip
        for k in client.scan_iter(match="test:dd*"):
            client.delete(k)


def _config(tmp: Path) -> tuple[AppConfig, str]:
    """The demo configuration with its own Redis names; one batch holds every bar of a bar
    time (see docs/serving.md, Drawdown protection)."""
    tag = f"test:dd{uuid.uuid4().hex[:8]}"
    keys = {
        "signals_stream": f"{tag}:signals", "stream_maxlen": 100000, "channel": f"{tag}:live",
        "dedupe_ttl_seconds": 3600, "ops_flags_key": f"{tag}:flags",
        "heartbeat_prefix": f"{tag}:hb:", "heartbeat_seconds": 0.2, "heartbeat_ttl_seconds": 6,
    }  # fmt: skip
    source = {"kind": "file", "stream_prefix": "core:bars:", "file": "serving/bars.jsonl",
              "block_ms": 200, "batch_bars": 100_000}  # fmt: skip
    root = config_with(tmp, {"serving_policy": {"redis": keys, "bar_source": source}})
    return load_config(root, "dev"), tag


def _outcome(cfg: AppConfig, tmp: Path, tag: str, worker: str) -> dict[str, Any]:
    """A worker's signals, the flags it left and its drawdown alerts and audit rows."""
    box = Outbox(tmp / "serving" / "outbox" / f"{worker}.db")
    signals = [json.loads(p) for p in box.payloads()]
    box.close()
    flags = parse_flags(redis.Redis.from_url(redis_url()).get(f"{tag}:flags"), "test")
    db = make_engine(database_url(cfg))
    alerts = [a for a in Alerts(db).recent()
              if a.code.startswith("CORE_DD_") and a.details["worker"] == worker]  # fmt: skip
    actions = [a for a in Registry(db).actions() if a.action.startswith("dd.")
               and (a.details or {}).get("worker") == worker]  # fmt: skip
    return {"signals": signals, "flags": flags, "alerts": alerts, "actions": actions}


def _reference(served: dict[str, Any]) -> tuple[list[PairBars], Any, AppConfig]:
    """The backtest of the replayed bars with the worker's model outputs (z, β, AI1/2/3)."""
    cfg = versioned(served["cfg"], read_params(served["folder"]))
    close = {(b.symbol, b.ts_ns): b.close for b in served["bars"]}
    out = []
    for p in cfg.universe.pairs:
        live = [s for s in served["signals"] if s["pair_id"] == p.pair_id]
        ts = pd.DatetimeIndex([s["metadata"]["bar_ts"] for s in live]).as_unit("ns").asi8
        n = len(ts)
        out.append(PairBars(
            pair_id=p.pair_id, ts_ns=ts,
            price_a=np.array([close[(p.leg_a, t)] for t in ts]),
            price_b=np.array([close[(p.leg_b, t)] for t in ts]),
            beta=np.array([s["metadata"]["beta"] for s in live]),
            z=np.array([s["z_score"] for s in live]),
            prob=np.array([np.nan if s["return_prob"] is None else s["return_prob"]
                           for s in live]),
            risk=np.array([s["risk_score"] for s in live]),
            scale=np.array([s["position_scale"] for s in live]),
            atr_a=np.zeros(n), atr_b=np.zeros(n),
            slippage=slippage_factors(cfg.costs, ts + HOUR), fx_blocked=np.zeros(n, dtype=bool),
        ))  # fmt: skip
    run = run_portfolio(out, pair_setups(cfg, "1h"), *THETA, account=account_rules(cfg, "1h"))
    return out, run, cfg


def _crossings(ts: np.ndarray, equity: np.ndarray, capital: float, levels: dict) -> dict:
    """The bars where an equity path first warns (again after each new peak) and halts."""
    peak, warned, out = capital, False, {"warn": [], "halt": []}
    for t, e in zip(ts.tolist(), equity.tolist(), strict=True):
        peak = max(peak, e)
        dd = 1.0 - e / peak
        if dd <= 0:
            warned = False
        elif dd >= levels["warn"] and not warned:
            warned = True
            out["warn"].append(t)
        if dd >= levels["halt"] and not out["halt"]:
            out["halt"].append(t)
    return out


def _live(served: dict[str, Any], scope: str | None, event: str) -> list[int]:
    """The bars of the worker's crossings, from its alerts (checked equal to its audit rows)."""
    alerts = sorted(a.details["bar_ts_ns"] for a in served["alerts"]
                    if a.details["pair_id"] == scope and a.details["event"] == event)  # fmt: skip
    audited = sorted(
        a.details["bar_ts_ns"] for a in served["actions"] if a.action == f"dd.{event}"
        and a.details["pair_id"] == scope and (a.actor, a.role) == ("system:dd", "system")
    )  # fmt: skip
    assert alerts == audited, (scope, event)
    return alerts


def test_each_pair_warns_halts_and_flattens_on_the_backtests_bar(served) -> None:
    bars, run, cfg = _reference(served)
    lat = cfg.backtest.execution_at("1h").latency_bars
    crossed = {"warn": 0, "halt": 0, "flatten": 0}
    for b in bars:
        bt = run.pairs[b.pair_id]
        cut = len(b.ts_ns) - 1  # the backtest closes what is open at its last bar
        capital = pair_setups(cfg, "1h")[b.pair_id].strategy.capital
        expect = _crossings(b.ts_ns[:cut], bt.equity[:cut], capital, PAIR)
        t = bt.trades
        exits = t.loc[t.exit_reason == "dd_flatten", "exit_bar"].to_numpy() - lat
        expect["flatten"] = sorted(int(b.ts_ns[i]) for i in exits)
        for event, bars_at in expect.items():
            assert _live(served, b.pair_id, event) == bars_at, (b.pair_id, event)
            crossed[event] += len(bars_at)
        live = [s for s in served["signals"] if s["pair_id"] == b.pair_id]
        dd_exits = [
            s["metadata"]["bar_ts"] for s in live if s["metadata"]["reason"] == "dd_flatten"
        ]
        assert pd.DatetimeIndex(dd_exits).as_unit("ns").asi8.tolist() == expect["flatten"]
        if expect["halt"]:  # halted on that bar: no entry from it on
            halted = pd.Timestamp(expect["halt"][0], tz="UTC")
            assert not [s for s in live if s["metadata"]["action"] == "entry"
                        and pd.Timestamp(s["metadata"]["bar_ts"]) >= halted]  # fmt: skip
            assert b.pair_id in served["flags"].halted_pairs
        if expect["flatten"]:
            assert b.pair_id in served["flags"].flatten_pairs
    assert all(crossed.values()), crossed  # the path crosses every level


def test_the_book_halts_and_flattens_on_the_backtests_bar(served) -> None:
    bars, run, cfg = _reference(served)
    stops = run.metrics["account_stops"]
    starts = {k: [pd.Timestamp(s["start"]).value for s in stops if s["kind"] == k]
              for k in ("halt", "flatten")}  # fmt: skip
    setups = pair_setups(cfg, "1h")
    capital = {b.pair_id: setups[b.pair_id].strategy.capital for b in bars}
    ts, path = account_path(bars, {p: r.equity for p, r in run.pairs.items()}, capital)
    # Before any pair's last bar, where the backtest closes what it holds (live holds on).
    end = min(int(b.ts_ns[-1]) for b in bars)
    warns = _crossings(ts, path, sum(capital.values()), BOOK)["warn"]
    assert [w for w in _live(served, None, "warn") if w < end] == [w for w in warns if w < end]
    assert stops and _live(served, None, "halt") == [min(starts["halt"] + starts["flatten"])]
    # A stop that opens at flatten depth is a halt and a flatten on one bar.
    assert _live(served, None, "flatten") == sorted(starts["flatten"])
    exits = sorted(
        int(b.ts_ns[i]) for b in bars for i in
        run.pairs[b.pair_id].trades.query("exit_reason == 'account_flatten'")["exit_bar"]
        - cfg.backtest.execution_at("1h").latency_bars
    )  # fmt: skip
    live = sorted(pd.Timestamp(s["metadata"]["bar_ts"]).value for s in served["signals"]
                  if s["metadata"]["reason"] == "account_flatten")  # fmt: skip
    assert live == exits
    assert served["flags"].global_halt


def _crossed(out: dict[str, Any]) -> list[tuple]:
    """(scope, event, bar time) of every crossing a worker alerted, by bar time."""
    return sorted(((str(a.details["pair_id"]), a.details["event"], a.details["bar_ts_ns"])
                   for a in out["alerts"]), key=lambda c: (c[2], c[0], c[1]))  # fmt: skip


def test_a_restarted_worker_keeps_its_drawdown(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay in two halves, the worker stopped in between: the second starts from the
    outbox (paper positions, peaks, halts, the book) and ends where the one run did."""
    from dataclasses import replace

    monkeypatch.setenv("REDIS_URL", redis_url())
    monkeypatch.setenv("ARCHIVE_PATH", str(served["cfg"].paths.archive))
    cfg, tag = _config(tmp_path)
    bars = served["bars"]
    done = _crossed(served)
    # Stopped between two crossings: some happen before the restart, some after it.
    half = sorted({c[2] for c in done})[-1]
    assert done[0][2] < half
    path = tmp_path / "bars.jsonl"
    spec = replace(served["spec"], worker_id="dd-restart", config_root=str(cfg.config_root),
                   root=str(tmp_path / "serving"), bars_file=str(path),
                   exit_when_idle_seconds=0.2)  # fmt: skip
    write_bars_file(path, [b for b in bars if b.ts_ns < half])
    Worker(spec, cfg=cfg).run()
    with path.open("a") as fh:
        for b in bars:
            if b.ts_ns >= half:
                fh.write(json.dumps(bar_message(b), sort_keys=True) + "\n")
    Worker(spec, cfg=cfg).run()
    again = _outcome(cfg, tmp_path, tag, "dd-restart")

    def decisions(out: dict[str, Any]) -> list[tuple]:
        m = [(s["pair_id"], s["metadata"]) for s in out["signals"]]
        return [(p, d["bar_ts"], d["action"], d["side"], d["reason"]) for p, d in m]

    assert decisions(again) == decisions(served)
    assert _crossed(again) == done
    assert again["flags"].halted_pairs == served["flags"].halted_pairs
