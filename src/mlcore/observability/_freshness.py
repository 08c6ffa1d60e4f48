"""The data pipeline's freshness (002 観測設定, Analytics・可観測性: inference is held back while
the pipeline lags). Pure: the caller reads the watermarks and the clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

NS = 1_000_000_000


def watermark_lag_seconds(last_bar_ts_ns: int, bar_seconds: int, now_ns: int) -> float:
    """Now minus the close of the newest ingested bar (``data_watermark_lag_seconds``)."""
    return (now_ns - (last_bar_ts_ns + bar_seconds * NS)) / NS


def overdue_seconds(last_bar_ts_ns: int | None, bar_seconds: int, now_ns: int) -> float:
    """How late the pipeline is: the time past the close of the bar after its newest one (a bar
    is not due before it closes). No watermark at all: infinitely late."""
    if last_bar_ts_ns is None:
        return float("inf")
    return max(0.0, watermark_lag_seconds(last_bar_ts_ns, bar_seconds, now_ns) - bar_seconds)


class HoldChange(StrEnum):
    """What one check changed in a hold episode."""

    NONE = "none"
    STARTED = "started"
    ENDED = "ended"


@dataclass(frozen=True)
class FreshnessVerdict:
    """One check: whether entries are held, the episode change, and the worst symbol."""

    held: bool
    change: HoldChange
    worst_symbol: str | None
    worst_overdue_seconds: float


def judge(
    overdue_by_symbol: Mapping[str, float], budget_seconds: float, was_held: bool
) -> FreshnessVerdict:
    """Hold while any symbol's pipeline is overdue by more than ``budget_seconds``; report the
    start or end of an episode once (the caller logs and alerts on it)."""
    worst = max(overdue_by_symbol.items(), key=lambda kv: kv[1], default=(None, 0.0))
    held = worst[1] > budget_seconds
    change = HoldChange.NONE
    if held and not was_held:
        change = HoldChange.STARTED
    elif was_held and not held:
        change = HoldChange.ENDED
    return FreshnessVerdict(held, change, worst[0], float(worst[1]))
