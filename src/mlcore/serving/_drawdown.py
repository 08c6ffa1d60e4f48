"""Live drawdown protection (dd_policy.yaml): a paper copy of each pair's position, marked to
market at every bar as the backtest kernel marks it, and the book's drawdown stops.

:class:`PairDrawdown` follows the worker's own decisions: an order fills ``latency_bars`` after
the bar that decided it, at that bar's close (with ``latency_bars`` 0: the signal's bar close),
sized as :func:`mlcore.backtest._kernel.simulate` sizes it (the pair's equity then x
``risk_fraction`` x scale, β-neutral, lots rounded down, refused below the minimum lot or
notional), paying the cost table's fill rates and swap per bar held. Its equity, peak and
drawdown are the kernel's bar for bar (tests/unit/test_drawdown.py checks it on random paths);
its levels: ``warn`` (said once per drawdown, until a new peak), ``halt`` (no new entry),
``flatten`` (close what is held, then halted). A halt is reviewed ``review_bars`` after it began,
once flat: the drawdown is measured afresh, as in the kernel. Real fills are not read yet: the
paper position is the one the backtest would hold.

:class:`BookDrawdown` is :func:`mlcore.backtest._portfolio.account_stops` one bar time at a
time, over the sum of every pair's latest equity (a pair not seen yet counts its capital).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import IntEnum
from typing import Any

from mlcore.signals import LegSpec

__all__ = [
    "BookDrawdown",
    "BookStep",
    "DDLevel",
    "DrawdownLimits",
    "PairDrawdown",
    "PairStep",
]


class DDLevel(IntEnum):
    """How deep a drawdown is against dd_policy.yaml's limits."""

    NONE = 0
    WARN = 1
    HALT = 2
    FLATTEN = 3


@dataclass(frozen=True)
class DrawdownLimits:
    """One scope's limits (dd_policy.yaml ``pair`` or ``portfolio``) as fractions of the peak,
    and how long a halt lasts before it is reviewed (bars for a pair, ns for the book;
    negative: never)."""

    warn: float
    halt: float
    flatten: float
    review: int

    def __post_init__(self) -> None:
        for name in ("warn", "halt", "flatten"):
            v = getattr(self, name)
            if not (isinstance(v, float | int) and math.isfinite(v) and v > 0):
                raise ValueError(f"dd_policy.yaml: {name} must be a number > 0, got {v!r}")


def _lots(amount: float, step: float) -> float:
    # The kernel's rounding, to the same hair of tolerance.
    return math.floor(amount / step + 1e-9) * step


@dataclass(frozen=True)
class PairStep:
    """What a bar's mark-to-market decided before the pair's own decision: ``block`` new
    entries, ``flatten`` what is held (reason ``dd_flatten`` or ``account_flatten``), and the
    ``events`` first seen on this bar (``warn``, ``halt``, ``flatten``, ``review``)."""

    equity: float
    peak: float
    drawdown: float
    level: DDLevel
    block: bool
    flatten: str
    events: tuple[str, ...]


@dataclass
class _PairState:
    t: int = -1
    equity: float = 0.0
    peak: float = 0.0
    ua: float = 0.0
    ub: float = 0.0
    pa: float = math.nan  # the last prices marked
    pb: float = math.nan
    entry_due: int = -1
    entry_side: float = 0.0
    entry_beta: float = 0.0
    entry_scale: float = 0.0
    exit_due: int = -1
    halted: bool = False
    halted_at: int = -1
    warned: bool = False
    flattened: bool = False  # a dd flatten was decided in this halt


@dataclass
class PairDrawdown:
    """One pair's paper position and drawdown (see the module docstring)."""

    capital: float
    risk_fraction: float
    latency_bars: int
    leg_a: LegSpec
    leg_b: LegSpec
    limits: DrawdownLimits
    s: _PairState = field(default_factory=_PairState)

    def __post_init__(self) -> None:
        if self.s.t < 0:
            self.s.equity = self.s.peak = self.capital

    # -- checkpoint ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The state as JSON values (NaN prices as None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self.s).items()}  # fmt: skip

    def restore(self, doc: dict[str, Any]) -> None:
        """Put back a :meth:`state` (``ValueError`` naming a missing or mistyped field)."""
        values: dict[str, Any] = {}
        for f in fields(_PairState):
            if f.name not in doc:
                raise ValueError(f"drawdown state: field {f.name!r} missing")
            v = doc[f.name]
            kind = type(getattr(_PairState(), f.name))
            if v is None and kind is float:
                v = math.nan
            if kind is bool and not isinstance(v, bool):
                raise ValueError(f"drawdown state: {f.name!r} must be true or false, got {v!r}")
            if kind is not bool and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"drawdown state: {f.name!r} must be a number, got {v!r}")
            values[f.name] = kind(v)
        self.s = _PairState(**values)

    @property
    def holding(self) -> bool:
        return self.s.ua != 0.0 or self.s.ub != 0.0

    # -- one bar ---------------------------------------------------------------------------
    def _rates(self, factor: float) -> tuple[float, float]:
        a, b = self.leg_a.costs, self.leg_b.costs
        return a.fixed + a.slippage * factor, b.fixed + b.slippage * factor

    def _fill(self, pa: float, pb: float, factor: float) -> None:
        s = self.s
        if 0 <= s.exit_due <= s.t:
            ca, cb = self._rates(factor)
            s.equity -= abs(s.ua) * pa * ca + abs(s.ub) * pb * cb
            s.ua = s.ub = 0.0
            s.exit_due = -1
        if 0 <= s.entry_due <= s.t:
            s.entry_due = -1
            ra, rb = self.leg_a.rules, self.leg_b.rules
            notional_a = s.equity * self.risk_fraction * s.entry_scale / (1.0 + abs(s.entry_beta))
            units_a = _lots(notional_a / pa, ra.lot_step)
            units_b = _lots(abs(s.entry_beta) * notional_a / pb, rb.lot_step)
            if (
                units_a <= 0.0 or units_b <= 0.0 or units_a < ra.min_lot or units_b < rb.min_lot
                or min(units_a * pa, units_b * pb)
                < max(ra.min_notional_usd, rb.min_notional_usd)
            ):  # fmt: skip
                return  # refused, as the kernel refuses it
            s.ua = s.entry_side * units_a
            s.ub = -s.entry_side * math.copysign(1.0, s.entry_beta) * units_b
            ca, cb = self._rates(factor)
            s.equity -= units_a * pa * ca + units_b * pb * cb

    def mark(self, pa: float, pb: float, factor: float, control: float = 0.0) -> PairStep:
        """:meth:`move` then :meth:`verdict`."""
        self.move(pa, pb, factor)
        return self.verdict(control)

    def move(self, pa: float, pb: float, factor: float) -> None:
        """Advance one bar: mark what is held to the closes ``pa``, ``pb`` (account currency;
        NaN: not priced, nothing moves) and fill the orders due."""
        s = self.s
        s.t += 1
        priced = pa > 0 and pb > 0 and math.isfinite(pa + pb)
        if priced:
            if self.holding:
                a, b = self.leg_a.costs, self.leg_b.costs
                pnl = s.ua * (pa - s.pa) + s.ub * (pb - s.pb)
                carry = abs(s.ua) * s.pa * a.swap_per_bar + abs(s.ub) * s.pb * b.swap_per_bar
                s.equity += pnl - carry
            self._fill(pa, pb, factor)
            s.pa, s.pb = pa, pb

    def verdict(self, control: float = 0.0) -> PairStep:
        """What the drawdown decides before the pair's decision of the bar just moved (the
        kernel's checks: peak, review, halt, flatten); ``control`` is the book's (0 none,
        1 halt, 2 flatten)."""
        s = self.s
        lim = self.limits
        events: list[str] = []
        s.peak = max(s.peak, s.equity)
        dd = 1.0 - s.equity / s.peak if s.peak > 0 else 0.0
        holding = self.holding
        if s.halted and not holding and lim.review >= 0 and s.t - s.halted_at >= lim.review:
            s.halted, s.peak, dd, s.warned, s.flattened = False, s.equity, 0.0, False, False
            events.append("review")
        if dd <= 0.0:
            s.warned = False  # a new peak: the next fall is warned again
        elif dd >= lim.warn and not s.warned:
            s.warned = True
            events.append("warn")
        if dd >= lim.halt and not s.halted:
            s.halted, s.halted_at = True, s.t
            events.append("halt")
        flatten = ""
        if holding and s.exit_due < 0:
            if control >= 2.0:
                flatten = "account_flatten"
            elif dd >= lim.flatten:
                flatten = "dd_flatten"
                if not s.flattened:
                    s.flattened = True
                    events.append("flatten")
                if not s.halted:
                    s.halted, s.halted_at = True, s.t
                    events.append("halt")
        level = (
            DDLevel.FLATTEN if dd >= lim.flatten else DDLevel.HALT if dd >= lim.halt
            else DDLevel.WARN if dd >= lim.warn else DDLevel.NONE
        )  # fmt: skip
        return PairStep(s.equity, s.peak, dd, level, s.halted or control != 0.0, flatten,
                        tuple(events))  # fmt: skip

    def order(
        self, action: str, side: int, beta: float, scale: float, pa: float, pb: float,
        factor: float,
    ) -> None:  # fmt: skip
        """Take the pair's decision of this bar (after :meth:`mark`): an ``entry`` of ``side``
        at β and ``scale``, or an ``exit``; with no latency it fills at once."""
        s = self.s
        due = s.t + self.latency_bars
        if action == "entry" and not self.holding and s.entry_due < 0:
            s.entry_due, s.entry_side = due, float(side)
            s.entry_beta, s.entry_scale = beta, min(scale, 1.0)
        elif action == "exit" and self.holding and s.exit_due < 0:
            s.exit_due = due
        else:
            return
        if self.latency_bars == 0 and pa > 0 and pb > 0 and math.isfinite(pa + pb):
            self._fill(pa, pb, factor)


@dataclass(frozen=True)
class BookStep:
    """The book's drawdown at one bar time: its ``control`` (0 none, 1 halt, 2 flatten) and
    the ``events`` first seen then."""

    equity: float
    peak: float
    drawdown: float
    control: float
    events: tuple[str, ...]


@dataclass
class BookDrawdown:
    """The book's stops, bar time by bar time (see the module docstring)."""

    capital: float
    limits: DrawdownLimits  # review in ns
    peak: float = math.nan
    until: int = -1
    control: float = 0.0
    warned: bool = False
    last_ts: int = -1

    def __post_init__(self) -> None:
        if math.isnan(self.peak):
            self.peak = self.capital

    def state(self) -> dict[str, Any]:
        return {"peak": self.peak, "until": self.until, "control": self.control,
                "warned": self.warned, "last_ts": self.last_ts}  # fmt: skip

    def restore(self, doc: dict[str, Any]) -> None:
        try:
            peak, until, control = float(doc["peak"]), int(doc["until"]), float(doc["control"])
            warned, last_ts = bool(doc["warned"]), int(doc["last_ts"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"book drawdown state unusable: {exc!r}") from None
        if control not in (0.0, 1.0, 2.0) or not math.isfinite(peak):
            raise ValueError(f"book drawdown state unusable: control {control}, peak {peak}")
        self.peak, self.until, self.control = peak, until, control
        self.warned, self.last_ts = warned, last_ts

    def at(self, ts_ns: int, equity: float) -> BookStep:
        """The book at bar time ``ts_ns`` with ``equity`` (the sum over the pairs); a time
        already seen gives the control in force without moving the state."""
        if ts_ns <= self.last_ts:
            return BookStep(equity, self.peak, 0.0, self.control, ())
        self.last_ts = ts_ns
        lim = self.limits
        events: list[str] = []
        if self.control and ts_ns >= self.until:
            self.control, self.peak, self.warned = 0.0, equity, False
            events.append("review")
        self.peak = max(self.peak, equity)
        dd = 1.0 - equity / self.peak if self.peak > 0 else 0.0
        if dd <= 0.0:
            self.warned = False
        elif dd >= lim.warn and not self.warned:
            self.warned = True
            events.append("warn")
        if not self.control and dd >= lim.halt:
            self.until = ts_ns + lim.review
            self.control = 2.0 if dd >= lim.flatten else 1.0
            events.extend(("halt", "flatten") if self.control == 2.0 else ("halt",))
        elif self.control == 1.0 and dd >= lim.flatten:
            self.control = 2.0
            events.append("flatten")
        return BookStep(equity, self.peak, dd, self.control, tuple(events))
