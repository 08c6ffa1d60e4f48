"""The data pipeline's watermark as a worker sees it (002 観測設定: 推論を抑止 while the pipeline
lags). The per-bar check (``stale_bar`` in :mod:`mlcore.serving._pair`) refuses a live bar that
is old on arrival; this is the other signal: the ingest side (the archive's ``_watermark.json``
of each leg, the newest bar the pipeline stored) falling behind. While any leg's pipeline is
overdue by more than the budget, the worker makes no new entries (exits and flattens still go
out: fail closed means no new risk), counts each pair-bar so held, logs one line and raises one
alert per episode."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from mlcore.config import TIMEFRAMES, AppConfig
from mlcore.data import read_watermark
from mlcore.observability import (
    NS,
    HoldChange,
    HoldReason,
    judge,
    overdue_seconds,
    record_inference_held,
    record_pipeline_lag,
    record_watermark_lag,
    watermark_lag_seconds,
)
from mlcore.serving._flags import OpsFlags

log = logging.getLogger("mlcore.serving")
ALERT_CODE = "CORE_DATA_PIPELINE_LAG"

Alert = Callable[[str, str, dict[str, Any]], None]


def lag_budget_seconds(cfg: AppConfig) -> float:
    """The budget observability_policy data_freshness.budget_from names."""
    if cfg.observability.data_freshness.budget_from.startswith("pipeline_policy"):
        return float(cfg.pipeline.freshness_budget_seconds)
    return float(cfg.serving.freshness_budget_seconds)


class PipelineWatch:
    """Whether a worker holds new entries for the pipeline's lag, checked every
    ``check_every_seconds`` (off for a replay, whose clock is not the bars')."""

    def __init__(
        self, cfg: AppConfig, symbols: Iterable[str], alert: Alert, worker_id: str, *, live: bool
    ) -> None:
        policy = cfg.observability.data_freshness
        self.cfg = cfg
        self.live = live
        self.enabled = live and policy.watermark == "ingest"
        self.bar_seconds = TIMEFRAMES[cfg.serving.timeframe]
        self.symbols = sorted(symbols)
        self.alert = alert
        self.worker_id = worker_id
        self.every_s = policy.check_every_seconds
        self.budget_s = lag_budget_seconds(cfg)
        self.held = False
        self._checked_at = -float("inf")

    def check(self, now_ns: int | None = None) -> bool:
        """Re-read the watermarks when due; return whether new entries are held."""
        if not self.enabled or time.monotonic() - self._checked_at < self.every_s:
            return self.held
        self._checked_at = time.monotonic()
        now = time.time_ns() if now_ns is None else now_ns
        tf = self.cfg.serving.timeframe
        bar_s = TIMEFRAMES[tf]
        overdue: dict[str, float] = {}
        for sym in self.symbols:
            try:
                mark = read_watermark(self.cfg, sym, tf)
            except (OSError, ValueError) as exc:  # unreadable: as late as no watermark
                log.warning("watermark of %s %s unreadable: %s", sym, tf, exc)
                mark = None
            last = None if mark is None else int(mark.value)
            overdue[sym] = overdue_seconds(last, bar_s, now)
            if last is not None:
                record_watermark_lag(self.cfg, sym, tf, watermark_lag_seconds(last, bar_s, now))
        verdict = judge(overdue, self.budget_s, self.held)
        self.held = verdict.held
        if verdict.change is HoldChange.STARTED:
            late = verdict.worst_overdue_seconds
            how = f"overdue by {late:.0f} s" if math.isfinite(late) else "has no watermark"
            message = (
                f"{self.worker_id}: data pipeline {verdict.worst_symbol} {tf} {how} (budget "
                f"{self.budget_s:g} s): no new entries until it catches up (exits still go out)"
            )
            log.warning(message)
            details = {"worker": self.worker_id, "symbol": verdict.worst_symbol,
                       "overdue_seconds": late if math.isfinite(late) else None}  # fmt: skip
            self.alert(ALERT_CODE, message, details)
        elif verdict.change is HoldChange.ENDED:
            log.info("%s: data pipeline caught up: new entries resume", self.worker_id)
        return self.held

    def flags(self, flags: OpsFlags, n_bars: int, tally: Counter[str]) -> OpsFlags:
        """The flags to decide ``n_bars`` pair-bars by: with a soft halt (no new entries; exits
        and flattens go on) while held, those bars counted."""
        if not n_bars or not self.check():
            return flags
        record_inference_held(HoldReason.DATA_LAG, n_bars)
        tally["held:data_lag"] += n_bars
        return flags.model_copy(update={"global_halt": True})

    def bar_arrived(self, symbol: str, bar_ts_ns: int) -> None:
        """Set ``data_pipeline_lag_seconds``: the age of a live bar on arrival (not in a
        replay, whose clock is compressed)."""
        if self.live:
            close_ns = bar_ts_ns + self.bar_seconds * NS
            record_pipeline_lag(self.cfg, symbol, (time.time_ns() - close_ns) / NS)
