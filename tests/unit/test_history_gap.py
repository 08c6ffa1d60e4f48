"""A pair's first live bar a whole month after the catalog's last bar (a gap warm-up on the
history cannot bridge, where the batch features restart a segment) is refused, said in one log
line naming the pair, both bars and the warm-up needed; the features restart cold."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlcore.config import AppConfig
from mlcore.features import longest_window
from mlcore.serving import NO_FLAGS, PairRuntime
from mlcore.serving._pair import history_gap
from mlcore.serving._setup import pair_setup

HOUR = 3_600 * 1_000_000_000


def _ts(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value)


def test_a_gap_is_a_whole_missing_month() -> None:
    assert not history_gap(_ts("2024-01-31 23:00"), _ts("2024-02-01 00:00"))
    assert not history_gap(_ts("2024-12-27 21:00"), _ts("2025-01-31 00:00"))  # the next month
    assert history_gap(_ts("2024-01-31 23:00"), _ts("2024-03-01 00:00"))
    assert history_gap(_ts("2024-11-30 00:00"), _ts("2025-01-02 00:00"))


def _runtime(cfg: AppConfig, n: int, last: int) -> PairRuntime:
    rng = np.random.default_rng(0)
    a = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    b = 50.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    bars = np.column_stack([a * 1.001, a * 0.999, a, b * 1.001, b * 0.999, b])
    setup = pair_setup(cfg, cfg.universe.pairs[0], (0.55, 0.5), "0" * 64)
    scorer = SimpleNamespace(version="v", score=lambda v, event: (math.nan,) * 3)
    rt = PairRuntime(setup, scorer=scorer, worker="w")  # type: ignore[arg-type]
    rt.warm(bars, last)
    return rt


def test_the_first_live_bar_after_a_gap_is_refused_in_one_line(
    cfg: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    need = longest_window(cfg.features.pair)
    last = _ts("2024-01-31 23:00")
    rt = _runtime(cfg, need + 50, last)
    assert math.isfinite(rt.prev_z)  # warmed
    first = _ts("2024-03-04 00:00")
    with caplog.at_level(logging.ERROR, logger="mlcore.serving"):
        out = rt.on_bar(first, (100.0, 99.0, 99.5, 50.0, 49.0, 49.5), first + HOUR, NO_FLAGS, {})
    assert out.signal is None and out.refused == "history_gap"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    said = lines[0]
    pair = cfg.universe.pairs[0].pair_id
    assert said.startswith("SERVING_HISTORY_GAP") and pair in said
    assert "2024-01-31T23:00:00Z" in said and "2024-03-04T00:00:00Z" in said
    assert f"{need} bars of warm-up" in said
    # Cold again: the next bars are refused as warm-up, never traded on pre-gap features.
    nxt = rt.on_bar(first + HOUR, (100.0, 99.0, 99.5, 50.0, 49.0, 49.5), first + 2 * HOUR,
                    NO_FLAGS, {})  # fmt: skip
    assert nxt.refused == "warmup"


def test_a_live_bar_right_after_the_history_is_not_a_gap(
    cfg: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    last = _ts("2024-01-31 23:00")
    rt = _runtime(cfg, longest_window(cfg.features.pair) + 50, last)
    with caplog.at_level(logging.ERROR, logger="mlcore.serving"):
        out = rt.on_bar(last + HOUR, (100.0, 99.0, 99.5, 50.0, 49.0, 49.5), last + 2 * HOUR,
                        NO_FLAGS, {})  # fmt: skip
    assert out.refused != "history_gap"
    assert not caplog.records


def test_a_checkpoint_taken_before_the_first_live_bar_keeps_the_check(cfg: AppConfig) -> None:
    last = _ts("2024-01-31 23:00")
    rt = _runtime(cfg, longest_window(cfg.features.pair) + 50, last)
    engine, rest = rt.state()
    again = _runtime(cfg, 0, -1)
    again.restore(engine, rest)
    first = _ts("2024-03-04 00:00")
    out = again.on_bar(first, (100.0, 99.0, 99.5, 50.0, 49.0, 49.5), first + HOUR, NO_FLAGS, {})
    assert out.refused == "history_gap"
