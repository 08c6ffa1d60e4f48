"""A fill checked against its signal and turned into a live trade: per leg the expected price
(the signal's bar-close price, ``notional_usd / units``) and the cost model's expected cost
(the signal's ``est_cost_usd``, pro rata of the filled quantity), the realized slippage and
cost against them, and on an exit the realized P&L against the entry it closes. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mlcore.feedback._fills import Fill, FillAction, FillSource, Reason, Rejection

_BPS = 1e4


@dataclass(frozen=True)
class SignalLeg:
    """One leg of the signal a fill answers."""

    symbol: str
    side: str  # BUY / SELL / FLAT
    units: float
    notional_usd: float
    est_cost_usd: float

    @property
    def price_usd(self) -> float:
        """The bar-close price the signal sized the leg at (NaN without units)."""
        return self.notional_usd / self.units if self.units > 0 else math.nan


@dataclass(frozen=True)
class SignalRef:
    """What a fill is checked against: its signal as served."""

    signal_id: str
    ts: datetime  # the bar's close, when the decision was taken
    pair_id: str
    model_version: str
    action: str
    side: int
    beta: float
    risk_flag: int
    legs: tuple[SignalLeg, ...]


def as_utc(at: datetime) -> datetime:
    """``at`` with its time zone (SQLite gives UTC times back without one)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def signal_ref(row: Any) -> SignalRef:
    """A :class:`SignalRef` from a ``core.signals_live``/``signals_history`` row."""
    payload = row["payload"] or {}
    meta = payload.get("metadata", {})
    legs = tuple(
        SignalLeg(str(g["symbol"]), str(g["side"]), float(g["units"]), float(g["notional_usd"]),
                  float(g["est_cost_usd"]))
        for g in payload.get("legs", [])
    )  # fmt: skip
    ts = as_utc(row["ts"])
    return SignalRef(
        signal_id=row["signal_id"], ts=ts, pair_id=row["pair_id"],
        model_version=row["model_version"], action=row["action"], side=int(row["side"]),
        beta=float(meta.get("beta", math.nan)), risk_flag=int(payload.get("risk_flag", 0)),
        legs=legs,
    )  # fmt: skip


def check_against_signal(
    fill: Fill, signal: SignalRef | None, now: datetime, skew_seconds: float
) -> Rejection | None:
    """Why ``fill`` cannot answer ``signal`` (None: it can)."""
    bad = _check(fill, signal, now, skew_seconds)
    return None if bad is None else Rejection(bad[0], bad[1], fill.fill_id)


def _check(
    fill: Fill, signal: SignalRef | None, now: datetime, skew_seconds: float
) -> tuple[Reason, str] | None:
    if fill.filled_at > now + timedelta(seconds=skew_seconds):
        return Reason.FUTURE_FILL, f"filled_at {fill.filled_at.isoformat()} is in the future"
    if signal is None:
        return Reason.ORPHAN, f"no signal {fill.signal_id} in core.signals_live or _history"
    if fill.filled_at < signal.ts:
        return Reason.BEFORE_SIGNAL, (
            f"filled_at {fill.filled_at.isoformat()} is before its signal {signal.ts.isoformat()}"
        )
    for what, got, want in (
        ("pair_id", fill.pair_id, signal.pair_id),
        ("action", str(fill.action), signal.action),
        ("model_version", fill.model_version or signal.model_version, signal.model_version),
        ("leg symbols", [g.symbol for g in fill.legs], [g.symbol for g in signal.legs]),
    ):
        if got != want:
            return Reason.SIGNAL_MISMATCH, f"{what} {got!r} differs from the signal's {want!r}"
    if fill.side != signal.side or [g.side for g in fill.legs] != [g.side for g in signal.legs]:
        return Reason.SIDE_MISMATCH, (
            f"side {fill.side} legs {[g.side for g in fill.legs]} differ from the signal's "
            f"{signal.side} {[g.side for g in signal.legs]}"
        )
    return None


@dataclass(frozen=True)
class TradeLeg:
    """One leg of a live trade: as filled, as expected, and the gap."""

    symbol: str
    side: str
    qty: float
    price: float
    fee_usd: float
    expected_price: float
    expected_cost_usd: float
    slippage_bps: float  # > 0: worse than the bar close (bought higher, sold lower)
    cost_usd: float  # fee + slippage against the bar close, comparable with expected_cost_usd


@dataclass(frozen=True)
class LiveTrade:
    """One fill landed in ``core.live_trades``."""

    fill_id: str
    signal_id: str
    model_version: str
    pair_id: str
    action: FillAction
    side: int
    filled_at: datetime
    signal_ts: datetime
    legs: tuple[TradeLeg, ...]
    notional_usd: float
    slippage_bps: float
    cost_usd: float
    expected_cost_usd: float
    entry_fill_id: str | None
    pnl_usd: float | None
    source: FillSource
    received_at: datetime


def _trade_leg(leg: Any, expected: SignalLeg) -> TradeLeg:
    sign = 1 if leg.side == "BUY" else -1
    ref = expected.price_usd
    slip_usd = sign * (leg.price - ref) * leg.qty
    share = leg.qty / expected.units if expected.units > 0 else 0.0
    return TradeLeg(
        symbol=leg.symbol, side=leg.side, qty=leg.qty, price=leg.price, fee_usd=leg.fee_usd,
        expected_price=ref, expected_cost_usd=expected.est_cost_usd * share,
        slippage_bps=sign * (leg.price / ref - 1.0) * _BPS, cost_usd=leg.fee_usd + slip_usd,
    )  # fmt: skip


def realized_pnl_usd(entry: LiveTrade, exit_legs: tuple[TradeLeg, ...]) -> float:
    """The P&L of closing ``entry`` with ``exit_legs``: each leg's price move times the closed
    quantity, in the entry's direction, less the fees of both fills."""
    pnl = 0.0
    for e, x in zip(entry.legs, exit_legs, strict=True):
        sign = 1 if e.side == "BUY" else -1
        pnl += sign * min(e.qty, x.qty) * (x.price - e.price)
    return pnl - sum(g.fee_usd for g in entry.legs) - sum(g.fee_usd for g in exit_legs)


def build_trade(
    fill: Fill, signal: SignalRef, entry: LiveTrade | None, source: FillSource,
    received_at: datetime,
) -> LiveTrade:  # fmt: skip
    """The live trade of a fill that passed :func:`check_against_signal`; ``entry`` is the open
    entry an exit closes (None: an entry, or an exit whose entry never arrived: no P&L)."""
    legs = tuple(_trade_leg(g, s) for g, s in zip(fill.legs, signal.legs, strict=True))
    expected_notional = sum(g.qty * g.expected_price for g in legs)
    slip_usd = sum(g.cost_usd - g.fee_usd for g in legs)
    is_exit = fill.action == FillAction.EXIT and entry is not None
    return LiveTrade(
        fill_id=fill.fill_id, signal_id=fill.signal_id, model_version=signal.model_version,
        pair_id=fill.pair_id, action=fill.action, side=fill.side, filled_at=fill.filled_at,
        signal_ts=signal.ts, legs=legs, notional_usd=sum(g.qty * g.price for g in legs),
        slippage_bps=slip_usd / expected_notional * _BPS if expected_notional > 0 else 0.0,
        cost_usd=sum(g.cost_usd for g in legs),
        expected_cost_usd=sum(g.expected_cost_usd for g in legs),
        entry_fill_id=entry.fill_id if is_exit and entry is not None else None,
        pnl_usd=realized_pnl_usd(entry, legs) if is_exit and entry is not None else None,
        source=source, received_at=received_at,
    )  # fmt: skip


@dataclass(frozen=True)
class SlippageSummary:
    """Realized costs against the cost model over some live trades."""

    fills: int
    mean_slippage_bps: float | None
    p95_abs_slippage_bps: float | None
    cost_usd: float
    expected_cost_usd: float
    cost_ratio: float | None  # realized / expected


def summarize_costs(trades: list[LiveTrade]) -> SlippageSummary:
    """Mean and 95th percentile |slippage| (bps, notional-weighted per fill), total realized
    and expected cost, and their ratio."""
    if not trades:
        return SlippageSummary(0, None, None, 0.0, 0.0, None)
    slips = sorted(abs(t.slippage_bps) for t in trades)
    cost, expected = sum(t.cost_usd for t in trades), sum(t.expected_cost_usd for t in trades)
    return SlippageSummary(
        fills=len(trades), mean_slippage_bps=sum(t.slippage_bps for t in trades) / len(trades),
        p95_abs_slippage_bps=slips[min(len(slips) - 1, math.ceil(0.95 * len(slips)) - 1)],
        cost_usd=cost, expected_cost_usd=expected,
        cost_ratio=cost / expected if expected > 0 else None,
    )  # fmt: skip
