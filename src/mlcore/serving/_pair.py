"""One pair in a worker: streaming features → AI1/AI2/AI3 → decision → legs → signal, per
aligned bar, and the state a checkpoint keeps of it."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlcore.config import AI1LabelPolicy, CostTable, PairFeatureWindows
from mlcore.execution import slippage_factor_at
from mlcore.features import PAIR_FEATURES, PairFeatureEngine, longest_window
from mlcore.serving._bars import RawBar
from mlcore.serving._drawdown import DrawdownLimits, PairDrawdown, PairStep
from mlcore.serving._flags import Control, OpsFlags
from mlcore.serving._scorer import INPUT_NAMES, PairScorer
from mlcore.signals import (
    ENTRY,
    EXIT,
    HOLD,
    DecisionRules,
    LegSpec,
    PairDecider,
    Sizing,
    build_signal,
    leg_records,
    size_legs,
)

HARD_HALTED = "hard_halt"  # Outcome.refused of a bar under a hard halt (not a refusal)
_Z, _BETA, _DZEMA = (PAIR_FEATURES.index(n) for n in ("z", "beta", "dz_ema"))
_EV_DIR, _EV_ABS = INPUT_NAMES.index("event_direction"), INPUT_NAMES.index("event_abs_z0")


@dataclass
class FxQuote:
    """The latest close of an FX instrument and when that bar closed."""

    rate: float = math.nan
    close_ns: int = -1


@dataclass(frozen=True)
class Conversion:
    """How a leg's price becomes account currency: through an FX symbol (or none)."""

    fx_symbol: str | None
    inverse: bool

    def rate(self, quotes: dict[str, FxQuote], at_ns: int, stale_ns: int) -> float:
        """The rate at ``at_ns``; NaN when the FX close is missing or older than ``stale_ns``."""
        if self.fx_symbol is None:
            return 1.0
        q = quotes.get(self.fx_symbol)
        if q is None or q.close_ns < 0 or at_ns - q.close_ns > stale_ns:
            return math.nan
        return 1.0 / q.rate if self.inverse else q.rate


log = logging.getLogger("mlcore.serving")


def _month(ts_ns: int) -> int:
    """Months since 1970-01 of a UTC timestamp."""
    return int(np.datetime64(int(ts_ns), "ns").astype("datetime64[M]").astype(np.int64))


def _iso(ts_ns: int) -> str:
    return str(np.datetime64(int(ts_ns), "ns"))[:19] + "Z"


def history_gap(last_ns: int, first_ns: int) -> bool:
    """Whether a whole calendar month lies between the last catalog bar a pair warmed on and
    its first live bar: the batch features (:func:`mlcore.features.segment_starts`) restart
    their warm-up after such a gap, so warm-up on the history before it cannot bridge it."""
    return _month(first_ns) - _month(last_ns) > 1


@dataclass(frozen=True)
class PairSetupLive:
    """What a pair needs that does not change bar to bar."""

    pair_id: str
    leg_a: LegSpec
    leg_b: LegSpec
    conv_a: Conversion
    conv_b: Conversion
    windows: PairFeatureWindows
    ai1: AI1LabelPolicy
    rules: DecisionRules
    capital_usd: float
    risk_fraction: float
    bar_seconds: int
    valid_seconds: float
    freshness_ns: int
    fx_stale_ns: int
    costs: CostTable
    params_sha256: str  # the version's decision.json: named in every signal
    drawdown: DrawdownLimits | None = None  # dd_policy.yaml pair (None: no live drawdown)


@dataclass
class Outcome:
    """What one aligned bar produced: a signal, or the reason it was refused (``hard_halt``:
    a pair under a hard halt, which signals nothing)."""

    signal: dict[str, Any] | None
    refused: str = ""
    dd: PairStep | None = None  # the drawdown's verdict on this bar


@dataclass
class PairRuntime:
    """The live state of one pair (see the module docstring)."""

    setup: PairSetupLive
    scorer: PairScorer
    worker: str
    model_registered: bool = True  # False: every signal says the registry does not hold it
    engine: PairFeatureEngine = field(init=False)
    decider: PairDecider = field(init=False)
    last_ts_ns: int = -1
    prev_z: float = math.nan
    units: tuple[float, float] = (0.0, 0.0)
    #: the last catalog bar warmed on, until the first live bar is checked against it (-1: none)
    history_end_ns: int = -1
    _vector: np.ndarray = field(init=False)
    dd: PairDrawdown | None = field(init=False, default=None)
    #: (bar, price A, price B, slippage factor) of the last bar marked to market
    _moved: tuple[int, float, float, float] = (-1, math.nan, math.nan, 1.0)

    def __post_init__(self) -> None:
        s = self.setup
        self.engine = PairFeatureEngine(s.windows)
        self.decider = PairDecider(s.rules)
        self._vector = np.empty(len(INPUT_NAMES))
        if s.drawdown is not None:
            self.dd = PairDrawdown(s.capital_usd, s.risk_fraction, s.rules.latency_bars,
                                   s.leg_a, s.leg_b, s.drawdown)  # fmt: skip

    # -- checkpoint ------------------------------------------------------------------------
    def state(self) -> tuple[bytes, str]:
        """(feature-engine state, the rest as JSON) for the worker's SQLite checkpoint."""
        rest = {
            "last_ts_ns": self.last_ts_ns,
            "prev_z": None if math.isnan(self.prev_z) else self.prev_z,
            "units": list(self.units),
            "decider": self.decider.state(),
            "windows": self.setup.windows.model_dump(),
            "history_end_ns": self.history_end_ns,
            "drawdown": None if self.dd is None else self.dd.state(),
        }
        return self.engine.dump(), json.dumps(rest)

    def restore(self, engine: bytes, rest: str) -> None:
        """Put back a :meth:`state`."""
        doc = json.loads(rest)
        if doc.get("windows") != self.setup.windows.model_dump():
            raise ValueError(f"{self.setup.pair_id}: saved state was made with other windows")
        self.engine = PairFeatureEngine.undump(self.setup.windows, engine)
        self.last_ts_ns = int(doc["last_ts_ns"])
        self.prev_z = math.nan if doc["prev_z"] is None else float(doc["prev_z"])
        ua, ub = doc["units"]
        self.units = (float(ua), float(ub))
        self.decider.restore([int(v) for v in doc["decider"]])
        # Warmed on the catalog but no live bar seen yet: the first one is still checked.
        self.history_end_ns = int(doc.get("history_end_ns", -1))
        if self.dd is not None and doc.get("drawdown") is not None:
            self.dd.restore(doc["drawdown"])

    def swap(
        self, setup: PairSetupLive, scorer: PairScorer, registered: bool,
        engine: tuple[PairFeatureEngine, float] | None,
    ) -> None:  # fmt: skip
        """Serve another version/θ/config from the next bar on, keeping the position, the
        hold count, the paper position and drawdown and the last bar seen (the new setup's
        limits and sizing apply from the next bar); ``engine`` (with its last z) replaces the
        feature state when the new setup's windows differ (re-warmed by the caller)."""
        decider = PairDecider(setup.rules)
        decider.restore(self.decider.state())
        self.decider, self.setup, self.scorer = decider, setup, scorer
        self.model_registered = registered
        if engine is not None:
            self.engine, self.prev_z = engine
        if setup.drawdown is None:
            self.dd = None
        elif self.dd is None:
            self.dd = PairDrawdown(setup.capital_usd, setup.risk_fraction,
                                   setup.rules.latency_bars, setup.leg_a, setup.leg_b,
                                   setup.drawdown)  # fmt: skip
        else:  # the same state object: equity, peak, open paper position, halt
            self.dd = dataclasses.replace(
                self.dd, capital=setup.capital_usd, risk_fraction=setup.risk_fraction,
                latency_bars=setup.rules.latency_bars, leg_a=setup.leg_a, leg_b=setup.leg_b,
                limits=setup.drawdown,
            )  # fmt: skip

    def warm(self, bars: np.ndarray, last_ts_ns: int) -> None:
        """Feed history (n x 6 aligned bars, the newest last) through the features; the
        decision state starts flat."""
        feats = self.engine.warm(bars, threads=1)
        self.prev_z = float(feats[-1, _Z]) if len(feats) else math.nan
        self.last_ts_ns = last_ts_ns
        self.history_end_ns = last_ts_ns if len(bars) else -1

    def _bridged(self, ts_ns: int) -> bool:
        """Check the first live bar against the history warmed on; across a gap warm-up cannot
        bridge, say so in one line and restart the features cold (the bars until they are
        defined again are refused as warm-up, as the batch features restart a segment)."""
        end, self.history_end_ns = self.history_end_ns, -1
        if end < 0 or not history_gap(end, ts_ns):
            return True
        s = self.setup
        log.error(
            "SERVING_HISTORY_GAP %s: first live bar %s leaves a gap after the catalog's last bar "
            "%s that warm-up cannot bridge (a whole month missing); its features restart and "
            "need %d bars of warm-up: ingest the missing bars and restart to serve at once",
            s.pair_id, _iso(ts_ns), _iso(end), longest_window(s.windows),
        )  # fmt: skip
        self.engine = PairFeatureEngine(s.windows)
        self.prev_z = math.nan
        return False

    # -- one bar ---------------------------------------------------------------------------
    def _event(self, z: float, dz_ema: float) -> bool:
        """Whether an AI1 event opens on this bar (``mlcore.labels.ai1_events``' rule)."""
        entry_z = self.setup.ai1.entry_z
        prev = self.prev_z
        in_band = abs(z) >= entry_z
        prev_in = abs(prev) >= entry_z  # NaN compares false: outside
        entering = not prev_in or math.copysign(1.0, z) != math.copysign(1.0, prev)
        return (
            in_band
            and entering
            and math.isfinite(dz_ema)
            and abs(dz_ema) <= self.setup.ai1.max_dz_ema
        )

    def move(
        self, ts_ns: int, bar: tuple[float, float, float, float, float, float],
        fx: dict[str, FxQuote],
    ) -> float:  # fmt: skip
        """Mark the paper position to this bar's closes (account currency) and fill its orders
        due; return the pair's equity (NaN without a drawdown tracker)."""
        s = self.setup
        if self.dd is None:
            return math.nan
        close_ns = ts_ns + s.bar_seconds * 1_000_000_000
        pa = bar[2] * s.conv_a.rate(fx, close_ns, s.fx_stale_ns)
        pb = bar[5] * s.conv_b.rate(fx, close_ns, s.fx_stale_ns)
        factor = slippage_factor_at(s.costs, close_ns)
        self._moved = (ts_ns, pa, pb, factor)
        self.dd.move(pa, pb, factor)
        return self.dd.s.equity

    def _dd_step(
        self, ts_ns: int, bar: tuple[float, float, float, float, float, float],
        fx: dict[str, FxQuote], book: float,
    ) -> PairStep | None:  # fmt: skip
        """The drawdown's verdict on this bar (marked to market first), None without one."""
        if self.dd is None:
            return None
        if self._moved[0] != ts_ns:
            self.move(ts_ns, bar, fx)
        return self.dd.verdict(book)

    def on_bar(
        self, ts_ns: int, bar: tuple[float, float, float, float, float, float], now_ns: int,
        flags: OpsFlags, fx: dict[str, FxQuote], book: float = 0.0,
    ) -> Outcome:  # fmt: skip
        """Advance the pair by one aligned bar (high_A, low_A, close_A, high_B, low_B, close_B);
        ``book`` is the book's drawdown stop at this bar time (0 none, 1 halt, 2 flatten)."""
        s = self.setup
        step = self._dd_step(ts_ns, bar, fx, book)
        bridged = self.history_end_ns < 0 or self._bridged(ts_ns)
        feats = self.engine.update(bar)
        self.last_ts_ns = ts_ns
        values = feats.tolist()
        z, beta, dz_ema = values[_Z], values[_BETA], values[_DZEMA]
        close_ns = ts_ns + s.bar_seconds * 1_000_000_000
        rate_a = s.conv_a.rate(fx, close_ns, s.fx_stale_ns)
        rate_b = s.conv_b.rate(fx, close_ns, s.fx_stale_ns)
        refused = (
            "warmup" if not math.isfinite(z)
            else "stale_bar" if now_ns - close_ns > s.freshness_ns
            else "fx_stale" if math.isnan(rate_a + rate_b)
            else ""
        )  # fmt: skip
        event = not refused and self._event(z, dz_ema)
        self.prev_z = z
        if refused:
            self.decider.step(z, beta, math.nan, math.nan, math.nan, decide=False)
            return Outcome(None, refused if bridged else "history_gap", step)
        v = self._vector
        v[: len(PAIR_FEATURES)] = feats
        v[_EV_DIR] = 0.0 if z == 0 else math.copysign(1.0, z)
        v[_EV_ABS] = abs(z)
        prob, risk, scale = self.scorer.score(v, event)
        if math.isnan(risk) or math.isnan(scale):
            self.decider.step(z, beta, math.nan, math.nan, math.nan, decide=False)
            return Outcome(None, "warmup", step)
        ctl, dd_flatten = _control(flags.control(s.pair_id), step)
        if ctl == Control.HARD_HALT:
            # No signal at all; time passes (pending orders fill, the hold count runs) and the
            # features advanced above, so the pair is ready when the halt is lifted.
            self.decider.step(z, beta, math.nan, math.nan, math.nan, decide=False)
            return Outcome(None, HARD_HALTED, step)
        halted, flatten = ctl == Control.SOFT_HALT, ctl == Control.FLATTEN
        scaled = scale * flags.leverage_scale
        d = self.decider.step(z, beta, prob, risk, scaled, halted=halted, flatten=flatten)
        action, side, reason = d.action, d.side, d.reason
        price_a, price_b = bar[2] * rate_a, bar[5] * rate_b
        units = (0.0, 0.0)
        if action == ENTRY:
            gross = s.capital_usd * s.risk_fraction * scaled
            sizing = size_legs(gross, beta, price_a, price_b, s.leg_a, s.leg_b)
            if sizing.refused:
                self.decider.cancel_entry()
                action, side, reason = HOLD, 0, sizing.refused
            else:
                units = (sizing.units_a, sizing.units_b)
                self.units = units
        elif action == EXIT:
            units = self.units
            self.units = (0.0, 0.0)
            if reason == "flatten" and dd_flatten:
                reason = dd_flatten
        if self.dd is not None:
            _, pa, pb, fac = self._moved
            self.dd.order(action, side, beta, scaled, pa, pb, fac)
        factor = slippage_factor_at(s.costs, close_ns) if action != HOLD else 1.0
        legs = leg_records(
            side, beta, Sizing(*units, ""), price_a, price_b, s.leg_a, s.leg_b, factor
        )
        r = s.rules
        policy = {
            "theta1": r.theta1, "theta2": r.theta2, "entry_z": r.entry_z, "exit_z": r.exit_z,
            "max_hold_bars": r.max_hold_bars, "leverage_scale": flags.leverage_scale,
            "halted": halted or flatten, "flatten": flatten, "control": str(ctl),
        }  # fmt: skip
        signal = build_signal(
            pair_id=s.pair_id, bar_ts_ns=ts_ns, bar_seconds=s.bar_seconds,
            valid_seconds=s.valid_seconds, model_version=self.scorer.version, legs=legs, z=z,
            beta=beta, return_prob=prob, risk_score=risk, position_scale=scaled,
            risk_flag=d.risk_flag, action=action, side=side, reason=reason, worker=self.worker,
            core_policy=policy, params_sha256=s.params_sha256,
            model_registered=self.model_registered,
        )  # fmt: skip
        return Outcome(signal, "", step)


def _control(ctl: Control, step: PairStep | None) -> tuple[Control, str]:
    """The control a bar is decided under: the stronger of the flags' (hard halt > flatten >
    soft halt) and the drawdown's on this bar itself (the flags it sets are for everyone
    else); and the drawdown's flatten reason when the drawdown flattens on this bar. A soft
    halt in the flags (say the pair's own drawdown halt, read back) never hides a drawdown
    flatten: the exit is due on this bar, as in the backtest."""
    if step is None or ctl == Control.HARD_HALT:
        return ctl, ""
    if step.flatten:
        return Control.FLATTEN, step.flatten
    if ctl != Control.NONE:
        return ctl, ""
    return (Control.SOFT_HALT if step.block else ctl), ""


@dataclass(frozen=True)
class PairBar:
    """An aligned pair-bar of the batch, waiting for its bar time's decision."""

    ts_ns: int
    rt: PairRuntime
    bar: tuple[float, float, float, float, float, float]
    raw: RawBar  # the message that completed it
    key: str
    fx: dict[str, FxQuote]  # the FX quotes when it was complete
