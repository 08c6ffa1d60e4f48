"""The live twin of the backtest's decision rules, one bar at a time.

At the close of each bar a pair is either flat or holds a (virtual) position:

- flat, no order pending: an entry is decided when AI1 was asked (an AI1 event opens on this
  bar), ``|z| >= entry_z``, ``return_prob > theta1``, ``risk_score < theta2``,
  ``position_scale > 0`` and β is finite and non-zero; it sells the spread when z > 0 and buys
  it when z < 0 (the backtest kernel's ``_gates``). A halt (ops flags) turns it into a hold;
- holding, no exit pending: an exit is decided on a flatten order (ops flags), when
  ``|z| <= exit_z``, or when the position has been held ``max_hold_bars`` bars;
- orders fill ``latency_bars`` bars after the decision, as the backtest assumes, so no new
  decision is taken while one is pending.

``risk_flag`` is 1 when ``risk_score >= theta2`` (spec 001). The account-level drawdown stops of
the backtest are not here: in production they reach the workers as ops flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

ENTRY: Final = "entry"
EXIT: Final = "exit"
HOLD: Final = "hold"


@dataclass(frozen=True)
class DecisionRules:
    """The thresholds and timing a decision uses (core_policy, backtest_policy)."""

    theta1: float
    theta2: float
    entry_z: float
    exit_z: float
    max_hold_bars: int
    latency_bars: int


@dataclass(frozen=True)
class Decision:
    """What a bar decided: ``action`` entry/exit/hold, ``side`` of the spread (+1 bought,
    -1 sold, 0 none) and why."""

    action: str
    side: int
    reason: str
    risk_flag: int


class PairDecider:
    """Per-pair decision state, advanced once per aligned bar (see the module docstring)."""

    __slots__ = (
        "_entry_due",
        "_entry_side",
        "_exit_due",
        "_held_since",
        "_t",
        "position",
        "rules",
    )

    def __init__(self, rules: DecisionRules) -> None:
        self.rules = rules
        self._t = -1
        self.position = 0  # +1 long spread, -1 short spread, 0 flat (after fills)
        self._held_since = -1
        self._entry_due = -1
        self._entry_side = 0
        self._exit_due = -1

    def state(self) -> list[int]:
        """The whole state as integers (for a checkpoint)."""
        return [self._t, self.position, self._held_since, self._entry_due, self._entry_side,
                self._exit_due]  # fmt: skip

    def restore(self, state: list[int]) -> None:
        """Put back a state from :meth:`state`."""
        if len(state) != 6 or not all(isinstance(v, int) for v in state):
            raise ValueError(f"decision state must be 6 integers, got {state!r}")
        (self._t, self.position, self._held_since, self._entry_due, self._entry_side,
         self._exit_due) = state  # fmt: skip

    def cancel_entry(self) -> None:
        """Drop the entry just decided (its order was refused: too small for the lots)."""
        self._entry_due, self._entry_side = -1, 0
        if self.rules.latency_bars == 0 and self._held_since == self._t:
            self.position, self._held_since = 0, -1

    def _fills(self, t: int) -> None:
        if self._exit_due == t:
            self.position, self._exit_due = 0, -1
        if self._entry_due == t:
            self.position, self._held_since, self._entry_due = self._entry_side, t, -1

    def step(
        self, z: float, beta: float, prob: float, risk: float, scale: float, *,
        halted: bool = False, flatten: bool = False, decide: bool = True,
    ) -> Decision:  # fmt: skip
        """Advance one bar. ``prob`` is NaN where AI1 is not asked; ``decide=False`` (a refused
        bar) lets orders fill and time pass but takes no decision."""
        r = self.rules
        self._t += 1
        t = self._t
        self._fills(t)
        risk_flag = 1 if risk >= r.theta2 else 0
        if not decide:
            return Decision(HOLD, 0, "refused", risk_flag)
        decision = Decision(HOLD, 0, "no_signal", risk_flag)
        if self.position != 0 and self._exit_due < 0:
            reason = (
                "flatten" if flatten
                else "exit_z" if abs(z) <= r.exit_z
                else "time_stop" if t - self._held_since >= r.max_hold_bars
                else ""
            )  # fmt: skip
            if reason:
                self._exit_due = t + r.latency_bars
                decision = Decision(EXIT, -self.position, reason, risk_flag)
            else:
                decision = Decision(HOLD, 0, "holding", risk_flag)
        elif self.position == 0 and self._entry_due < 0 and self._exit_due < 0:
            if (
                abs(z) >= r.entry_z and prob > r.theta1 and risk < r.theta2 and scale > 0.0
                and math.isfinite(beta) and beta != 0.0
            ):  # fmt: skip
                if halted or flatten:
                    decision = Decision(HOLD, 0, "halted", risk_flag)
                else:
                    side = -1 if z > 0 else 1
                    self._entry_due, self._entry_side = t + r.latency_bars, side
                    decision = Decision(ENTRY, side, "gates_passed", risk_flag)
        else:
            decision = Decision(HOLD, 0, "order_pending", risk_flag)
        if r.latency_bars == 0:
            self._fills(t)
        return decision
