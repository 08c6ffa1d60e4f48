"""What the models add, and why a window has no trades.

- :func:`zscore_rule` opens every AI gate (probability 1, risk 0, scale 1) on the same bars, so
  the same engine, costs, sizing and account rules give the plain z-score rule: enter at
  ``|z| >= entry_z``, exit at ``exit_z`` or the time stop. The backtest reports it beside the
  model.
- :func:`why_no_trades` names the first gate that no bar of a window passes, in the order the
  entry rule applies them (``|z| >= entry_z``, an AI1 event open, ``prob > θ1``,
  ``risk < θ2``, ``scale > 0``, a defined β), with the figure that fails and the gate's range.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mlcore.backtest._inputs import PairBars
from mlcore.backtest._portfolio import PairSetup
from mlcore.config import ThetaRange


def zscore_rule(bars: list[PairBars]) -> list[PairBars]:
    """The same bars with every AI gate open; FX staleness still blocks entries."""
    return [
        replace(b, prob=np.ones_like(b.prob), risk=np.zeros_like(b.risk),
                scale=np.ones_like(b.scale))
        for b in bars
    ]  # fmt: skip


def _cat(bars: list[PairBars], setups: dict[str, PairSetup], what: str) -> np.ndarray:
    parts = []
    for b in bars:
        entry_z = setups[b.pair_id].strategy.entry_z
        with np.errstate(invalid="ignore"):
            band = np.abs(b.z) >= entry_z
        if what == "band":
            parts.append(band)
        elif what == "absz":
            parts.append(np.where(np.isfinite(b.z), np.abs(b.z), -np.inf))
        else:
            parts.append(getattr(b, what) if what != "prob" else b.entry_prob())
    return np.concatenate(parts) if parts else np.zeros(0)


def why_no_trades(
    bars: list[PairBars], setups: dict[str, PairSetup], theta: tuple[float, float],
    box: ThetaRange, window: str,
) -> str:  # fmt: skip
    """One line: the first entry gate no bar of ``window`` passes at ``theta`` (or that every
    gate passed somewhere and no entry filled)."""
    n = sum(len(b.ts_ns) for b in bars)
    entry_z = sorted({setups[b.pair_id].strategy.entry_z for b in bars})
    z_text = "/".join(f"{z:g}" for z in entry_z)
    band = _cat(bars, setups, "band").astype(bool)
    if not band.any():
        top = float(np.max(_cat(bars, setups, "absz"), initial=-np.inf))
        shown = f"{top:.2f}" if np.isfinite(top) else "undefined"
        return (
            f"no trades in the {window} window: |z| never reaches entry_z {z_text} "
            f"({n:,} bars, largest |z| {shown})"
        )
    prob = _cat(bars, setups, "prob")[band]
    opens = np.isfinite(prob)
    if not opens.any():
        return (
            f"no trades in the {window} window: {int(band.sum()):,} bars with |z| >= {z_text}, "
            "none an AI1 event open (the speed filter or stale FX excluded them all)"
        )
    t1, t2 = theta
    lo1, hi1 = box.theta1
    lo2, hi2 = box.theta2
    best = float(np.max(prob[opens]))
    passed = opens & (prob > t1)
    if not passed.any():
        return (
            f"no trades in the {window} window: AI1's calibrated probability never exceeds "
            f"{best:.2f} at its {int(opens.sum()):,} event opens, not above θ1 {t1:.2f} "
            f"(range [{lo1:.2f}, {hi1:.2f}])"
        )
    risk = _cat(bars, setups, "risk")[band]
    low = float(np.nanmin(risk[passed])) if np.isfinite(risk[passed]).any() else float("nan")
    passed &= risk < t2
    if not passed.any():
        return (
            f"no trades in the {window} window: AI2's risk score is never below θ2 {t2:.2f} "
            f"(range [{lo2:.2f}, {hi2:.2f}]) where AI1 passes; lowest {low:.2f}"
        )
    passed &= _cat(bars, setups, "scale")[band] > 0.0
    if not passed.any():
        return (
            f"no trades in the {window} window: AI3's position scale is 0 wherever AI1 and AI2 pass"
        )
    beta = _cat(bars, setups, "beta")[band]
    passed &= np.isfinite(beta) & (beta != 0.0)
    if not passed.any():
        return f"no trades in the {window} window: β is undefined or 0 wherever the AI gates pass"
    return (
        f"no trades in the {window} window: {int(passed.sum()):,} bars passed every gate but no "
        "entry filled (a lot below the minimum, the window's end, or an account stop)"
    )


def why_found_trades_none(
    bars: list[PairBars], setups: dict[str, PairSetup], found: tuple[float, float],
    trades: int, box: ThetaRange,
) -> str:  # fmt: skip
    """Why the θ the search found makes no trade in the search window (its best objective can
    be a θ that trades nothing when every θ that trades loses more), for the stabilisation's
    "kept previous θ" line; "" when it trades."""
    if trades:
        return ""
    return why_no_trades(bars, setups, found, box, "search").split(": ", 1)[-1]
