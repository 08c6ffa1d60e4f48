"""The live data-quality guard: ingest's rules (:mod:`mlcore.data._dq`, :mod:`._parse`) for
one bar at a time, before it touches a pair's streaming state (spec 002 データ取得・前処理 DQ,
000 §7: an input that fails a check gives no new risk).

Per symbol, a bar is refused when

- ``future``: it starts after now (a clock or feed error: it cannot have begun, let alone
  closed; accepting it would make the real bars up to it look out of order). Stricter than
  ingest's "after now + one bar": a live bar is stamped by its start and sent at its close;
- ``off_grid``: its start is not a multiple of the bar length (ingest's grid rule);
- ``duplicate`` / ``out_of_order``: it does not start after the last accepted bar;
- ``bad_print``: its close (or its high or low) moved from the last accepted close by more
  than ``outlier_sigma`` robust sigmas of the trailing moves, the same sigma as ingest's
  (:func:`trailing_sigma`, the larger of a long and a short trailing median). Live, no later
  bar can show that the price came back, so such a bar is refused, and once a move has held
  for more than ``max_fill_bars`` bars (ingest's test of a real jump) the newest bar is
  accepted at the new level, unless the move is a factor of MAX_JUMP_FACTOR or more (a price
  that is ten times or a tenth of the last one is a feed or scale error, never a jump).

Invariants (tested): a refused bar never changes the state (only the list of closes of a
pending jump); the state's sigma equals
``classify_moves``' sigma on the same accepted closes; ``state``/``restore`` round-trip.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlcore.config import DQThresholds
from mlcore.data._dq import MAX_JUMP_FACTOR

_MAD_TO_SIGMA = 1.4826  # as mlcore.data._dq
_MAX_JUMP = math.log(MAX_JUMP_FACTOR)  # ingest's rule too (mlcore.data._dq)


def trailing_sigma(abs_moves: np.ndarray, th: DQThresholds) -> float:
    """Robust sigma of the next move from the trailing absolute log moves (oldest first, the
    last ``sigma_window_bars`` at most): ``1.4826 x`` the larger of the long median (at least
    ``sigma_min_bars`` moves) and the short one (the last ``sigma_short_bars``); NaN before
    ``sigma_min_bars`` moves (a median of a few moves alone is too noisy to judge by)."""
    n = len(abs_moves)
    if n < th.sigma_min_bars:
        return math.nan
    both = [float(np.median(abs_moves[-th.sigma_window_bars :]))]
    if n >= th.sigma_short_bars:
        both.append(float(np.median(abs_moves[-th.sigma_short_bars :])))
    return max(both) * _MAD_TO_SIGMA if both else math.nan


@dataclass
class _Symbol:
    last_ts_ns: int = -1
    last_close: float = math.nan
    moves: deque[float] = field(default_factory=deque)  # |log move| of accepted closes
    held: list[float] = field(default_factory=list)  # closes of a move not yet shown to hold


class LiveBarGuard:
    """The guard of a worker's symbols (see the module docstring)."""

    def __init__(self, th: DQThresholds, bar_seconds: int) -> None:
        self.th = th
        self.bar_ns = bar_seconds * 1_000_000_000
        self.symbols: dict[str, _Symbol] = {}

    def _symbol(self, symbol: str) -> _Symbol:
        s = self.symbols.get(symbol)
        if s is None:
            s = self.symbols[symbol] = _Symbol(moves=deque(maxlen=self.th.sigma_window_bars))
        return s

    def warm(self, symbol: str, last_ts_ns: int, closes: np.ndarray) -> None:
        """Start ``symbol`` from its history: accepted closes (oldest first) up to the bar that
        started at ``last_ts_ns``."""
        s = self._symbol(symbol)
        closes = np.asarray(closes, dtype=np.float64)
        closes = closes[np.isfinite(closes) & (closes > 0)]
        if not len(closes):
            return
        tail = closes[-(self.th.sigma_window_bars + 1) :]
        s.moves.clear()
        if len(tail) == len(closes):
            s.moves.append(0.0)  # ingest's first move is 0
        s.moves.extend(np.abs(np.diff(np.log(tail))).tolist())
        s.last_ts_ns, s.last_close, s.held = last_ts_ns, float(closes[-1]), []

    def sigma(self, symbol: str) -> float:
        """The robust sigma the next bar of ``symbol`` is judged by."""
        s = self.symbols.get(symbol)
        if s is None or not s.moves:
            return math.nan
        return trailing_sigma(np.fromiter(s.moves, dtype=np.float64), self.th)

    def check(
        self, symbol: str, ts_ns: int, high: float, low: float, close: float, now_ns: int
    ) -> tuple[str, str]:
        """("", "") and the state advanced, or (reason, detail) and the state untouched."""
        if ts_ns > now_ns:
            return "future", f"{symbol} bar at {ts_ns} ns starts after now ({now_ns})"
        if ts_ns % self.bar_ns:
            return "off_grid", f"{symbol} bar at {ts_ns} ns is off the {self.bar_ns // 10**9}s grid"
        s = self._symbol(symbol)
        if ts_ns <= s.last_ts_ns:
            reason = "duplicate" if ts_ns == s.last_ts_ns else "out_of_order"
            return reason, f"{symbol} bar at {ts_ns} ns, the last accepted at {s.last_ts_ns}"
        if math.isnan(s.last_close):  # the symbol's first bar: nothing to judge it by
            self._advance(s, ts_ns, close)
            return "", ""
        sigma = self.sigma(symbol)
        last = math.log(s.last_close)
        move = math.log(close) - last
        worst = max(abs(move), abs(math.log(high) - last), abs(math.log(low) - last))
        if worst >= _MAX_JUMP:  # tenfold: never a price, whatever sigma (even 0 or unknown)
            return "bad_print", (f"{symbol} bar at {ts_ns} ns is {math.exp(worst):.3g} times "
                                 f"the last close {s.last_close:g}")  # fmt: skip
        limit = self.th.outlier_sigma * sigma
        if not (sigma > 0 and worst > limit):  # NaN sigma (too little history): accepted
            s.held = []
            self._advance(s, ts_ns, close)
            return "", ""
        if abs(move) > limit and self._holds(s, close, move):
            s.held = []
            self._advance(s, ts_ns, close)  # a real jump: the new level is the price now
            return "", ""
        detail = (f"{symbol} bar at {ts_ns} ns moved {worst / sigma:.1f} sigma from the last "
                  f"close {s.last_close:g} (limit {self.th.outlier_sigma:g})")  # fmt: skip
        return "bad_print", detail

    def _holds(self, s: _Symbol, close: float, move: float) -> bool:
        """Whether this close, with those refused just before it at the same new level, has
        held for more than max_fill_bars bars (then it is a jump, not a bad print)."""
        band = (1.0 - self.th.spike_retrace_ratio) * abs(move)
        if s.held and abs(math.log(close) - math.log(s.held[0])) > band:
            s.held = []
        s.held.append(close)
        return len(s.held) > self.th.max_fill_bars

    def _advance(self, s: _Symbol, ts_ns: int, close: float) -> None:
        if not math.isnan(s.last_close):
            s.moves.append(abs(math.log(close) - math.log(s.last_close)))
        else:
            s.moves.append(0.0)
        s.last_ts_ns, s.last_close = ts_ns, close

    def state(self) -> dict[str, Any]:
        """The guard as plain JSON values (the worker's checkpoint)."""
        return {sym: [s.last_ts_ns, None if math.isnan(s.last_close) else s.last_close,
                      list(s.moves), list(s.held)]
                for sym, s in self.symbols.items()}  # fmt: skip

    def restore(self, doc: dict[str, Any]) -> None:
        """Put back a :meth:`state` (``ValueError`` when it is not one: then nothing changed)."""
        restored = {}
        try:
            for sym, (ts, close, moves, held) in doc.items():
                s = _Symbol(int(ts), math.nan if close is None else float(close),
                            deque((float(m) for m in moves), maxlen=self.th.sigma_window_bars),
                            [float(h) for h in held])  # fmt: skip
                good = [*s.moves, *s.held] + ([] if close is None else [s.last_close])
                if not all(math.isfinite(v) and v >= 0 for v in good) or (
                    close is not None and s.last_close <= 0
                ) or any(h <= 0 for h in s.held):  # fmt: skip
                    raise ValueError(f"{sym}: prices must be > 0 and moves finite")
                restored[str(sym)] = s
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"guard state is not usable: {exc}") from None
        self.symbols.update(restored)
