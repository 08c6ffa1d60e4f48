"""Inference held back while the data pipeline lags (002 観測設定): the pipeline's watermark
(the newest ingested bar of each leg, ``_watermark.json`` as ingest writes it) overdue by more
than the budget holds new entries (a soft halt: exits still go out), counted, with one alert per
episode; fresh again, entries resume. The overdue time against an independent computation."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from mlcore.config import AppConfig, load_config
from mlcore.data import PartitionStore
from mlcore.observability import HoldChange, judge, overdue_seconds
from mlcore.serving import NO_FLAGS
from mlcore.serving._data_lag import ALERT_CODE, PipelineWatch, lag_budget_seconds
from tests.conftest import config_with

HOUR_NS = 3600 * 10**9


@given(
    last=st.integers(0, 2**50), bar=st.sampled_from([60, 300, 3600, 86400]),
    ahead=st.integers(-(10**13), 10**14),
)  # fmt: skip
def test_overdue_is_the_time_past_the_next_bars_close(last: int, bar: int, ahead: int) -> None:
    now = last + ahead
    due = pd.Timestamp(last, unit="ns") + pd.Timedelta(seconds=2 * bar)  # next bar's close
    late = (pd.Timestamp(now, unit="ns") - due).total_seconds()
    assert overdue_seconds(last, bar, now) == pytest.approx(max(0.0, late), abs=1e-6)
    assert overdue_seconds(None, bar, now) == math.inf


@given(st.dictionaries(st.sampled_from("ABCDE"), st.floats(0, 1e6)), st.booleans())
def test_an_episode_starts_and_ends_once(overdue: dict[str, float], was: bool) -> None:
    v = judge(overdue, 120.0, was)
    assert v.held == any(x > 120.0 for x in overdue.values())
    expected = {(False, True): HoldChange.STARTED, (True, False): HoldChange.ENDED}
    assert v.change == expected.get((was, v.held), HoldChange.NONE)


@pytest.fixture
def live_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    monkeypatch.setenv("ARCHIVE_PATH", str(tmp_path / "archive"))
    budget = "pipeline_policy.freshness_budget_seconds"
    policy = {"data_freshness": {"watermark": "ingest", "check_every_seconds": 0.01,
                                 "budget_from": budget}}  # fmt: skip
    return load_config(config_with(tmp_path, {"observability_policy": policy}), "dev")


def _mark(cfg: AppConfig, symbol: str, last_ts_ns: int) -> None:
    folder = PartitionStore(cfg.paths.raw).symbol_dir(cfg.serving.timeframe, symbol)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = pd.Timestamp(last_ts_ns, unit="ns", tz="UTC").isoformat()
    (folder / "_watermark.json").write_text(json.dumps({"last_ts": stamp}))


def _held() -> float:
    return REGISTRY.get_sample_value("core_inference_held_total", {"reason": "data_lag"}) or 0.0


def test_entries_are_held_while_the_pipeline_lags(live_cfg: AppConfig) -> None:
    alerts: list[tuple[str, str]] = []
    legs = ["EUR/USD", "GBP/USD"]
    watch = PipelineWatch(live_cfg, legs, lambda code, msg, _d: alerts.append((code, msg)),
                          "worker-0", live=True)  # fmt: skip
    budget_ns = int(lag_budget_seconds(live_cfg) * 1e9)
    now = time.time_ns()
    newest = now - now % HOUR_NS - HOUR_NS  # the newest closed 1h bar
    for leg in legs:
        _mark(live_cfg, leg, newest)
    tally: Counter[str] = Counter()
    before = _held()
    assert watch.flags(NO_FLAGS, 3, tally) is NO_FLAGS  # fresh: nothing held
    assert (alerts, _held() - before) == ([], 0)

    # One leg's pipeline stops: past the next bar's close plus the budget, entries are held.
    _mark(live_cfg, "GBP/USD", now - 2 * HOUR_NS - budget_ns - 60 * 10**9)
    for n in (3, 2):
        time.sleep(0.02)
        flags = watch.flags(NO_FLAGS, n, tally)
        assert flags.global_halt and not flags.hard_halt and not flags.flatten_all
    assert _held() - before == 5 and tally["held:data_lag"] == 5
    assert [code for code, _ in alerts] == [ALERT_CODE]  # one alert for the episode
    assert "GBP/USD" in alerts[0][1] and "exits still go out" in alerts[0][1]

    _mark(live_cfg, "GBP/USD", newest)  # caught up: entries resume
    time.sleep(0.02)
    assert watch.flags(NO_FLAGS, 1, tally) is NO_FLAGS
    assert _held() - before == 5 and len(alerts) == 1


def test_no_watermark_holds_and_a_replay_never_does(live_cfg: AppConfig) -> None:
    alerts: list[str] = []
    live = PipelineWatch(live_cfg, ["EUR/USD"], lambda c, m, d: alerts.append(m), "w", live=True)
    assert live.check() and "has no watermark" in alerts[0]
    replay = PipelineWatch(live_cfg, ["EUR/USD"], lambda c, m, d: alerts.append(m), "w",
                           live=False)  # fmt: skip
    assert not replay.check() and len(alerts) == 1


def test_off_by_default_in_the_embedded_config(cfg: AppConfig) -> None:
    watch = PipelineWatch(cfg, ["EUR/USD"], lambda c, m, d: None, "w", live=True)
    assert cfg.observability.data_freshness.watermark == "off" and not watch.check()
