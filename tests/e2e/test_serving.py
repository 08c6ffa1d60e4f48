"""Serving the demo's model version: a worker fed the catalog's last bars produces, bar for bar,
the scores and decisions the backtest takes on the same bars; signals match their schema; a
killed worker resumes with no signal lost or repeated; a damaged model is not served."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.backtest import PairStrategy, optimize_theta, pair_bars, simulate_pair
from mlcore.config import AppConfig, load_config
from mlcore.data import Catalog
from mlcore.demo import DemoResult
from mlcore.errors import ConfigError
from mlcore.execution import DECISION_RECORD, PairModels, record_bytes
from mlcore.serving import (
    ModelUnusable,
    Outbox,
    Worker,
    WorkerSpec,
    replay_bars,
    write_bars_file,
)
from mlcore.signals import encode_signal, validate_signal
from tests.conftest import config_with

REPLAY_BARS = 1500
THETA = (0.55, 0.5)  # loose enough that the replay window holds several entries


def _spec(
    cfg: AppConfig, folder: Path, root: Path, warm: int, bars: Path, **kw: object
) -> WorkerSpec:
    base = dict(
        worker_id="worker-0", pair_ids=tuple(p.pair_id for p in cfg.universe.pairs),
        config_root=str(cfg.config_root), env_name=cfg.env_name, model_folder=str(folder),
        theta=THETA, replay=True, warm_until_ns=warm, exit_when_idle_seconds=0.2,
        root=str(root), bars_file=str(bars),
    )  # fmt: skip
    base.update(kw)
    return WorkerSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def replay(demo_run: tuple[AppConfig, DemoResult], tmp_path_factory: pytest.TempPathFactory):
    cfg, result = demo_run
    assert result.training is not None
    folder = result.training.folder
    root = tmp_path_factory.mktemp("serve")
    bars, warm = replay_bars(cfg, [p.pair_id for p in cfg.universe.pairs], REPLAY_BARS)
    write_bars_file(root / "bars.jsonl", bars)
    worker = Worker(_spec(cfg, folder, root / "serving", warm, root / "bars.jsonl"), cfg=cfg)
    counts = worker.run()
    box = Outbox(root / "serving" / "outbox" / "worker-0.db")
    signals = [json.loads(p) for p in box.payloads()]
    box.close()
    return cfg, folder, root, warm, bars, counts, signals


def test_every_signal_matches_the_schema(replay) -> None:
    _, _, root, _, _, counts, signals = replay
    assert len(signals) >= REPLAY_BARS
    for s in signals:
        validate_signal(s)
    assert counts.get("refused:stale_bar", 0) == 0
    latest = json.loads((root / "serving" / "signals" / "XAU_XAG" / "signal.json").read_text())
    assert latest == [s for s in signals if s["pair_id"] == "XAU_XAG"][-1]


def test_worker_scores_and_decisions_equal_the_backtest(replay) -> None:
    cfg, folder, _, warm, _, _, signals = replay
    models = PairModels.load(folder)
    cat = Catalog(cfg)
    entries_seen = 0
    for pair in cfg.universe.pairs:
        ref = pair_bars(cfg, cat, models, pair, cfg.serving.timeframe).window(
            pd.Timestamp(warm, tz="UTC"), None
        )
        live = [s for s in signals if s["pair_id"] == pair.pair_id]
        ts = pd.DatetimeIndex([s["metadata"]["bar_ts"] for s in live]).as_unit("ns").asi8
        assert np.array_equal(ts, ref.ts_ns), pair.pair_id
        z = np.array([s["z_score"] for s in live])
        prob = np.array([np.nan if s["return_prob"] is None else s["return_prob"] for s in live])
        risk = np.array([s["risk_score"] for s in live])
        scale = np.array([s["position_scale"] for s in live])
        np.testing.assert_array_equal(z, ref.z)
        np.testing.assert_array_equal(risk, ref.risk)
        np.testing.assert_array_equal(scale, ref.scale)
        np.testing.assert_array_equal(prob, ref.entry_prob())
        ex, ai1 = cfg.backtest.execution_at("1h"), cfg.core.labels_at("1h").ai1
        lat = ex.latency_bars
        strat = PairStrategy(
            capital=1e12, theta1=THETA[0], theta2=THETA[1], entry_z=ai1.entry_z,
            exit_z=ai1.exit_z, max_hold_bars=ex.max_hold_bars,
            dd_halt=10.0, dd_flatten=10.0, lot_step_a=1e-9, lot_step_b=1e-9, latency_bars=lat,
        )  # fmt: skip
        bt = simulate_pair(ref.price_a, ref.price_b, ref.beta, ref.z, ref.entry_prob(), ref.risk,
                           ref.scale, strat)  # fmt: skip
        expect = []
        for tr in bt.trades.itertuples():
            expect.append((int(tr.entry_decided_bar), "entry", int(tr.side)))
            if tr.exit_reason != "end_of_data":
                expect.append((int(tr.exit_bar) - lat, "exit", -int(tr.side)))
        got = [(i, s["metadata"]["action"], s["metadata"]["side"]) for i, s in enumerate(live)
               if s["metadata"]["action"] != "hold"]  # fmt: skip
        cut = len(live) - 1 - lat
        assert [g for g in got if g[0] < cut] == sorted(e for e in expect if e[0] < cut)
        entries_seen += sum(1 for g in got if g[1] == "entry")
    assert entries_seen >= 3


def test_a_killed_worker_resumes_without_loss_or_repeat(replay, tmp_path: Path) -> None:
    cfg, folder, _, warm, bars, _, signals = replay
    # A worker that stops after part of the file (its batch committed), then a new one.
    write_bars_file(tmp_path / "bars.jsonl", bars)
    spec = _spec(cfg, folder, tmp_path / "serving", warm, tmp_path / "bars.jsonl")
    first = Worker(spec, cfg=cfg)
    for _ in range(3):
        first.step()
    first.outbox.close()  # dies here: nothing after the last commit survives
    Worker(spec, cfg=cfg).run()
    box = Outbox(tmp_path / "serving" / "outbox" / "worker-0.db")
    again = [json.loads(p) for p in box.payloads()]
    assert [s["id"] for s in again] == [s["id"] for s in signals]
    assert again == signals


def test_a_damaged_model_is_refused(replay, tmp_path: Path) -> None:
    cfg, folder, _, warm, _, _, _ = replay
    bad = tmp_path / folder.name
    shutil.copytree(folder, bad)
    with (bad / "ai2.lgbm.txt").open("ab") as fh:
        fh.write(b"\n# tampered\n")
    with pytest.raises(ModelUnusable, match="ai2"):
        Worker(_spec(cfg, bad, tmp_path / "s", warm, tmp_path / "b.jsonl"), cfg=cfg)


def test_a_stale_fx_rate_refuses_the_bar(replay) -> None:
    cfg, folder, _, _, _, _, _ = replay

    from mlcore.serving import NO_FLAGS, PairRuntime, PairScorer
    from mlcore.serving._pair import Conversion, FxQuote
    from mlcore.serving._setup import history, pair_setup

    pair = cfg.universe.pairs[0]
    # As if leg B were quoted in GBP: its price needs GBP/USD, fresh within fx_stale_seconds.
    setup = replace(pair_setup(cfg, pair, THETA, "0" * 64), conv_b=Conversion("GBP/USD", False))
    rt = PairRuntime(setup, PairScorer(PairModels.load(folder)), "w")
    bars, last = history(cfg, pair, None)
    rt.warm(bars[:-2], last)
    hour = 3_600_000_000_000
    ts = last + hour
    close = ts + hour
    stale = {"GBP/USD": FxQuote(1.27, close - (cfg.backtest.account.fx_stale_seconds + 1) * 10**9)}
    out = rt.on_bar(ts, tuple(bars[-2].tolist()), close, NO_FLAGS, stale)
    assert (out.signal, out.refused) == (None, "fx_stale")
    fresh = {"GBP/USD": FxQuote(1.25, close)}
    out = rt.on_bar(ts + hour, tuple(bars[-1].tolist()), close + hour, NO_FLAGS, fresh)
    assert out.signal is not None and out.refused == ""
    assert out.signal["legs"][1]["symbol"] == pair.leg_b


def test_the_supervisor_serves_prometheus_metrics(replay, tmp_path: Path, monkeypatch) -> None:
    import urllib.request

    from mlcore.serving import Supervisor
    from tests.conftest import free_port

    cfg, folder, _, warm, bars, _, _ = replay
    write_bars_file(tmp_path / "bars.jsonl", bars)
    spec = _spec(cfg, folder, tmp_path / "serving", warm, tmp_path / "bars.jsonl",
                 exit_when_idle_seconds=30.0)  # fmt: skip
    sup = Supervisor(cfg, [spec])
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored after the test
    port = free_port()
    sup.serve_metrics(port)
    sup.start()
    try:
        text = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
            if 'signals_total{action="hold"}' in text:
                break
            time.sleep(0.5)
        assert 'worker_up{worker="worker-0"} 1.0' in text
        assert "core_inference_latency_seconds_bucket" in text
        assert 'signals_total{action="hold"}' in text
        assert "signals_per_min" in text
    finally:
        sup.stop()


def test_a_named_model_is_checked_against_the_registry_before_it_is_served(
    demo_run: tuple[AppConfig, DemoResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --model``: the demo's registered version with a swapped model file (and
    checksums.json rewritten to match) is restored before it is served; a copy the registry
    does not hold is served only with --unregistered, every signal saying so."""
    from typer.testing import CliRunner

    from mlcore.cli import app
    from mlcore.registry import registry_for
    from mlcore.serving import Outbox
    from tests.conftest import config_with

    cfg, result = demo_run
    assert result.training is not None
    folder = result.training.folder
    name = f"serving-named-{uuid.uuid4().hex[:8]}"
    root = config_with(tmp_path, {"serving_policy": {"serving_root": name, "metrics_port": 0}})
    monkeypatch.setenv("ARCHIVE_PATH", str(cfg.paths.archive))
    # The demo's version is rejected by its gates (a year of synthetic market): served on purpose.
    replay = ["--replay-last", "120", "--exit-when-idle", "1", "--force-rejected"]
    replay += ["--config-root", str(root)]
    model, sums = folder / "ai1.lgbm.txt", folder / "checksums.json"
    genuine, genuine_sums = model.read_bytes(), sums.read_bytes()
    try:
        swapped = (folder / "ai3.lgbm.txt").read_bytes()  # a real model, in the wrong place
        model.write_bytes(swapped)
        doc = json.loads(genuine_sums)
        doc["ai1.lgbm.txt"] = hashlib.sha256(swapped).hexdigest()
        sums.write_text(json.dumps(doc))
        ran = CliRunner().invoke(app, ["serve", "--model", folder.name, *replay])
        assert ran.exit_code == 0, ran.output
        assert model.read_bytes() == genuine and sums.read_bytes() == genuine_sums
        assert registry_for(cfg).history(folder.name)[-1].event == "MODEL_RESTORED"
    finally:
        model.write_bytes(genuine)
        sums.write_bytes(genuine_sums)
    copy = tmp_path / "20991231_0000_unregistered"
    shutil.copytree(folder, copy)
    refused = CliRunner().invoke(app, ["serve", "--model", str(copy), *replay])
    assert refused.exit_code == 2
    assert (
        "error MODEL_VERSION_UNREGISTERED" in refused.stderr and "--unregistered" in refused.stderr
    )
    ran = CliRunner().invoke(app, ["serve", "--model", str(copy), "--unregistered", *replay])
    assert ran.exit_code == 0, ran.output
    assert "metadata.model_registered = false" in ran.stdout
    boxes = sorted((cfg.paths.archive / f"{name}-replay" / "outbox").glob("*.db"))
    signals = []
    for path in boxes:
        box = Outbox(path)
        signals += [json.loads(p) for p in box.payloads()]
        box.close()
    assert signals
    for s in signals:
        validate_signal(s)
        assert s["model_version"] == copy.name and s["metadata"]["model_registered"] is False


def _edited(cfg: AppConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    """The configuration copied with entry_z changed (the same archive)."""
    labels = {tf: p.model_dump(mode="json") for tf, p in cfg.core.labels.items()}
    labels["1h"]["ai1"]["entry_z"] = cfg.core.labels_at("1h").ai1.entry_z - 0.5
    monkeypatch.setenv("ARCHIVE_PATH", str(cfg.paths.archive))
    edited = load_config(config_with(tmp_path, {"core_policy": {"labels": labels}}), cfg.env_name)
    assert edited.core.labels_at("1h").ai1.entry_z == cfg.core.labels_at("1h").ai1.entry_z - 0.5
    return edited


def test_a_config_edit_leaves_a_trained_versions_signals_bit_identical(
    replay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's test: entry_z edited in the policy files after training; the version serves
    the same signals, byte for byte, each naming the sha256 of its decision.json."""
    cfg, folder, _, warm, bars, _, signals = replay
    edited = _edited(cfg, tmp_path, monkeypatch)
    write_bars_file(tmp_path / "bars.jsonl", bars)
    Worker(_spec(edited, folder, tmp_path / "serving", warm, tmp_path / "bars.jsonl"),
           cfg=edited).run()  # fmt: skip
    box = Outbox(tmp_path / "serving" / "outbox" / "worker-0.db")
    again = box.payloads()
    box.close()
    assert [json.loads(p) for p in again] == signals
    assert [encode_signal(json.loads(p)) for p in again] == [encode_signal(s) for s in signals]
    digest = hashlib.sha256((folder / DECISION_RECORD).read_bytes()).hexdigest()
    assert json.loads((folder / "checksums.json").read_text())[DECISION_RECORD] == digest
    assert {s["metadata"]["params_sha256"] for s in signals} == {digest}
    assert {s["metadata"]["core_policy"]["entry_z"] for s in signals} == {
        cfg.core.labels_at("1h").ai1.entry_z
    }


def test_a_config_edit_leaves_a_versions_backtest_unchanged(
    replay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, folder, *_ = replay
    edited = _edited(cfg, tmp_path, monkeypatch)
    done = cfg.paths.reports / "backtest" / folder.name / "backtest.json"
    record = json.loads(done.read_bytes())
    th = optimize_theta(edited, Catalog(edited), folder)
    assert th.config.core.labels_at("1h").ai1.entry_z == cfg.core.labels_at("1h").ai1.entry_z
    assert list(th.stabilised.theta) == record["theta"]["adopted"]
    assert th.search.best_objective == record["theta"]["best_objective"]
    digest = hashlib.sha256((folder / DECISION_RECORD).read_bytes()).hexdigest()
    assert record["lineage"]["params_sha256"] == digest


def _copy_with_record(folder: Path, dest: Path, record: bytes | None) -> Path:
    """A copy of a version whose decision.json is ``record`` (None: absent), checksums
    rewritten (an unregistered folder is checked against its own)."""
    shutil.copytree(folder, dest)
    sums = json.loads((dest / "checksums.json").read_text())
    if record is None:
        (dest / DECISION_RECORD).unlink()
        sums.pop(DECISION_RECORD)
    else:
        (dest / DECISION_RECORD).write_bytes(record)
        sums[DECISION_RECORD] = hashlib.sha256(record).hexdigest()
    (dest / "checksums.json").write_text(json.dumps(sums))
    return dest


def test_serving_refuses_a_pair_or_timeframe_the_version_was_not_trained_on(
    replay, tmp_path: Path
) -> None:
    cfg, folder, _, warm, _, _, _ = replay
    other = "1h" if cfg.serving.timeframe != "1h" else "4h"
    moved = replace(cfg, serving=cfg.serving.model_copy(update={"timeframe": other}))
    with pytest.raises(ConfigError, match="trained at") as exc:
        Worker(_spec(moved, folder, tmp_path / "s", warm, tmp_path / "b.jsonl"), cfg=moved)
    assert exc.value.code == "SERVING_TIMEFRAME_MISMATCH" and "\n" not in str(exc.value)
    doc = json.loads((folder / DECISION_RECORD).read_bytes())
    dropped = doc["pairs"].pop()["pair_id"]
    fewer = _copy_with_record(folder, tmp_path / "fewer" / folder.name, record_bytes(doc))
    with pytest.raises(ConfigError) as exc:
        Worker(_spec(cfg, fewer, tmp_path / "s2", warm, tmp_path / "b.jsonl"), cfg=cfg)
    assert exc.value.code == "SERVING_PAIR_NOT_IN_VERSION" and dropped in str(exc.value)
    old = _copy_with_record(folder, tmp_path / "old" / folder.name, None)
    with pytest.raises(ConfigError) as exc:
        Worker(_spec(cfg, old, tmp_path / "s3", warm, tmp_path / "b.jsonl"), cfg=cfg)
    assert exc.value.code == "MODEL_PARAMS_MISSING" and folder.name in str(exc.value)
    assert "retrain" in str(exc.value)
    with pytest.raises(ConfigError) as exc:  # its backtest too
        optimize_theta(cfg, Catalog(cfg), old)
    assert exc.value.code == "MODEL_PARAMS_MISSING"
