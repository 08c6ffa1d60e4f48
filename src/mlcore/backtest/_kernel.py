"""The compiled bar loop of a β-neutral two-leg pair strategy (one pass, no Python per bar).

At the close of bar t the strategy decides; the order fills at the close of bar
``t + latency_bars`` (0: at the same close).

- Entry, when flat and not halted: ``|z| >= entry_z``, ``prob > theta1``, ``risk < theta2`` and
  ``scale > 0``. It sells the spread when z > 0 (short A, long β·B) and buys it when z < 0. The
  gross notional is ``equity * risk_fraction * scale``, split so that the B leg's notional is
  |β| times the A leg's. Each leg's units are rounded down to its lot step; an entry whose leg
  rounds to nothing or falls below its minimum lot or minimum notional is refused (and
  counted).
- Exit: ``|z| <= exit_z`` (reason 1), held ``max_hold_bars`` bars (2), drawdown from the equity
  peak beyond ``dd_flatten`` (3, and no entry after it), the end of the data (4). A drawdown
  beyond ``dd_halt`` stops new entries. A halt is reviewed ``halt_review_bars`` after it began
  (negative: never): entries resume, with the drawdown measured afresh from the equity then.
  No entry is decided whose fill would fall on the last bar (it could only close at once).
- Money: positions are marked to market each bar. A fill of leg X at bar t pays
  ``|units| * price * (fixed_X + slippage_X * factor[t])`` (``fixed``: commission and half the
  spread; ``factor``: the bar's time-of-day slippage factor); a held position pays ``swap_X``
  of the leg's notional at the previous close per bar. The rates are parameters, the factor
  is the one cost input per bar.

Speed: a bar that is flat with no order pending changes nothing but its outputs until the next
signal, so the loop runs through such bars in a tight inner loop that reads z (and the gates and
β only where ``|z| >= entry_z``) and writes the outputs. Prices and the factor are read only on
the bars held or filled.
"""

from __future__ import annotations

from typing import Final

import numba as nb
import numpy as np

# Parameter slots of the float64 parameter vector: the strategy's, then each leg's cost rates.
(
    P_CAPITAL, P_THETA1, P_THETA2, P_ENTRY_Z, P_EXIT_Z, P_MAX_HOLD, P_DD_HALT, P_DD_FLATTEN,
    P_LOT_A, P_LOT_B, P_MIN_LOT_A, P_MIN_LOT_B, P_MIN_NOTIONAL, P_RISK_FRACTION, P_LATENCY,
    P_FIXED_A, P_SLIP_A, P_SWAP_A, P_FIXED_B, P_SLIP_B, P_SWAP_B, P_HALT_REVIEW,
) = range(22)  # fmt: skip
N_PARAMS: Final = 22

EXIT_Z: Final = 1
EXIT_TIME: Final = 2
EXIT_DD: Final = 3
EXIT_END: Final = 4
EXIT_ACCOUNT: Final = 5
EXIT_REASONS: Final = {EXIT_Z: "exit_z", EXIT_TIME: "time_stop", EXIT_DD: "dd_flatten",
                       EXIT_END: "end_of_data", EXIT_ACCOUNT: "account_flatten"}  # fmt: skip
# Account controls per bar (the CONTROL input row), set by the account-level drawdown stops.
CONTROL_NONE: Final = 0.0
CONTROL_HALT: Final = 1.0  # no new entry
CONTROL_FLATTEN: Final = 2.0  # no new entry, and close what is held

# Trade record columns (float64 matrix, one row per trade).
(
    T_ENTRY_DECIDED, T_ENTRY_BAR, T_EXIT_BAR, T_SIDE, T_UNITS_A, T_UNITS_B, T_ENTRY_PA,
    T_ENTRY_PB, T_EXIT_PA, T_EXIT_PB, T_COST, T_CARRY, T_PNL, T_REASON,
) = range(14)  # fmt: skip
N_TRADE_COLS: Final = 14
# Counters.
C_REFUSED_LOT, C_REFUSED_NOTIONAL, C_HALTED_BAR, C_SIGNALS = range(4)
N_COUNTERS: Final = 4

# Input rows of the (N_INPUTS x n) float64 input matrix: prices, β, z, the three gates, the
# time-of-day slippage factor and the account control.
I_PA, I_PB, I_BETA, I_Z, I_PROB, I_RISK, I_SCALE, I_FACTOR, I_CONTROL = range(9)
N_INPUTS: Final = 9
# Output rows: equity after the bar, units of A and of B held after it.
O_EQUITY, O_UNITS_A, O_UNITS_B = range(3)


@nb.njit(cache=True, nogil=True)
def _lots(amount: float, step: float) -> float:
    # A hair of tolerance so that an exact multiple is not lost to the division's rounding.
    lots: float = np.floor(amount / step + 1e-9) * step
    return lots


@nb.njit(cache=True, nogil=True)
def _gates(
    prob: float, risk: float, scale: float, beta: float, theta1: float, theta2: float
) -> bool:
    """Whether a bar's gates and β allow an entry (the caller checks ``|z| >= entry_z`` first
    and reads these only then). Scalars, not arrays: a call with array arguments pays reference
    counting, which costs more than the whole scan of a bar."""
    return prob > theta1 and risk < theta2 and scale > 0.0 and np.isfinite(beta) and beta != 0.0


@nb.njit(cache=True, nogil=True)
def _close(
    tr: np.ndarray, ua: float, ub: float, pa: float, pb: float, ca: float, cb: float, t: int,
    reason: int,
) -> float:  # fmt: skip
    """Record the exit of the open trade ``tr`` at bar ``t``; return the cost of the fill
    (``ca``, ``cb``: each leg's cost rate on this bar)."""
    cost = abs(ua) * pa * ca + abs(ub) * pb * cb
    tr[T_COST] += cost
    tr[T_PNL] -= cost
    tr[T_EXIT_BAR] = t
    tr[T_EXIT_PA] = pa
    tr[T_EXIT_PB] = pb
    tr[T_REASON] = reason
    return cost


# One loop on purpose: the state machine is clearer in one place than spread over helpers.
@nb.njit(cache=True, nogil=True)
def simulate(  # noqa: C901
    inputs: np.ndarray,
    params: np.ndarray,
    out: np.ndarray,
    trades: np.ndarray,
    counters: np.ndarray,
) -> int:
    """Run the strategy over the bars; fill ``out``, ``trades`` and ``counters``; return the
    number of trades."""
    pa, pb, beta, z = inputs[I_PA], inputs[I_PB], inputs[I_BETA], inputs[I_Z]
    prob, risk, scale, factor = inputs[I_PROB], inputs[I_RISK], inputs[I_SCALE], inputs[I_FACTOR]
    control = inputs[I_CONTROL]
    equity_out, units_a_out, units_b_out = out[O_EQUITY], out[O_UNITS_A], out[O_UNITS_B]
    n = len(pa)
    lat = int(params[P_LATENCY])
    entry_z, theta1, theta2 = params[P_ENTRY_Z], params[P_THETA1], params[P_THETA2]
    fixed_a, slip_a, swap_a = params[P_FIXED_A], params[P_SLIP_A], params[P_SWAP_A]
    fixed_b, slip_b, swap_b = params[P_FIXED_B], params[P_SLIP_B], params[P_SWAP_B]
    exit_z, max_hold = params[P_EXIT_Z], params[P_MAX_HOLD]
    dd_halt, dd_flatten = params[P_DD_HALT], params[P_DD_FLATTEN]
    review = params[P_HALT_REVIEW]
    halted_at = -1
    equity = params[P_CAPITAL]
    peak = equity
    ua = 0.0
    ub = 0.0
    halted = False
    n_trades = 0
    # Pending orders: due bar (-1 none), and what was decided.
    entry_due = -1
    entry_side = 0.0
    entry_beta = 0.0
    entry_scale = 0.0
    entry_decided = -1
    exit_due = -1
    exit_reason = 0
    held_since = -1
    # The open trade's PnL and carry so far (written to its row when it closes).
    trade_pnl = 0.0
    trade_carry = 0.0
    t = 0
    while t < n:
        if ua == 0.0 and ub == 0.0 and entry_due < 0 and exit_due < 0:
            # Flat, nothing pending: no bar before the next signal changes any state (equity,
            # peak and drawdown stay as they are), so only write the outputs up to it.
            u = t
            while u < n and not (
                abs(z[u]) >= entry_z and _gates(prob[u], risk[u], scale[u], beta[u], theta1, theta2)
            ):
                equity_out[u] = equity
                units_a_out[u] = 0.0
                units_b_out[u] = 0.0
                u += 1
            if u == n:
                break
            t = u
        if t > 0 and (ua != 0.0 or ub != 0.0):
            pnl = ua * (pa[t] - pa[t - 1]) + ub * (pb[t] - pb[t - 1])
            carry = abs(ua) * pa[t - 1] * swap_a + abs(ub) * pb[t - 1] * swap_b
            equity += pnl - carry
            trade_pnl += pnl - carry
            trade_carry += carry
        # Phase 0 fills the orders due now and decides; with no latency, phase 1 fills what
        # phase 0 decided, at the same close.
        for phase in range(2):
            if exit_due == t:
                ca, cb = fixed_a + slip_a * factor[t], fixed_b + slip_b * factor[t]
                tr = trades[n_trades]
                tr[T_PNL], tr[T_CARRY] = trade_pnl, trade_carry
                equity -= _close(tr, ua, ub, pa[t], pb[t], ca, cb, t, exit_reason)
                n_trades += 1
                ua = 0.0
                ub = 0.0
                exit_due = -1
            if entry_due == t:
                entry_due = -1
                gross = equity * params[P_RISK_FRACTION] * entry_scale
                notional_a = gross / (1.0 + abs(entry_beta))
                units_a = _lots(notional_a / pa[t], params[P_LOT_A])
                units_b = _lots(abs(entry_beta) * notional_a / pb[t], params[P_LOT_B])
                if (
                    units_a <= 0.0 or units_b <= 0.0
                    or units_a < params[P_MIN_LOT_A] or units_b < params[P_MIN_LOT_B]
                ):  # fmt: skip
                    counters[C_REFUSED_LOT] += 1
                elif min(units_a * pa[t], units_b * pb[t]) < params[P_MIN_NOTIONAL]:
                    counters[C_REFUSED_NOTIONAL] += 1
                else:
                    ua = entry_side * units_a
                    ub = -entry_side * np.sign(entry_beta) * units_b
                    ca, cb = fixed_a + slip_a * factor[t], fixed_b + slip_b * factor[t]
                    cost = units_a * pa[t] * ca + units_b * pb[t] * cb
                    equity -= cost
                    tr = trades[n_trades]
                    tr[:] = 0.0
                    tr[T_ENTRY_DECIDED] = entry_decided
                    tr[T_ENTRY_BAR] = t
                    tr[T_EXIT_BAR] = -1
                    tr[T_SIDE] = entry_side
                    tr[T_UNITS_A] = ua
                    tr[T_UNITS_B] = ub
                    tr[T_ENTRY_PA] = pa[t]
                    tr[T_ENTRY_PB] = pb[t]
                    tr[T_COST] = cost
                    trade_pnl, trade_carry = -cost, 0.0
                    held_since = t
            if phase == 1:
                break
            # Decisions at the close of bar t.
            peak = max(peak, equity)
            dd = 1.0 - equity / peak if peak > 0 else 0.0
            holding = ua != 0.0 or ub != 0.0
            if halted and not holding and review >= 0 and t - halted_at >= review:
                # The halt was reviewed: trading resumes from here, with a fresh peak.
                halted, peak, dd = False, equity, 0.0
            if dd >= dd_halt and not halted:
                halted, halted_at = True, t
            if holding and exit_due < 0:
                if control[t] >= CONTROL_FLATTEN:
                    exit_due, exit_reason = t + lat, EXIT_ACCOUNT
                elif dd >= dd_flatten:
                    exit_due, exit_reason = t + lat, EXIT_DD
                    if not halted:
                        halted, halted_at = True, t
                elif abs(z[t]) <= exit_z:
                    exit_due, exit_reason = t + lat, EXIT_Z
                elif t - held_since >= max_hold:
                    exit_due, exit_reason = t + lat, EXIT_TIME
            elif (
                not holding and entry_due < 0 and t + lat < n - 1 and abs(z[t]) >= entry_z
                and _gates(prob[t], risk[t], scale[t], beta[t], theta1, theta2)
            ):  # fmt: skip
                counters[C_SIGNALS] += 1
                if halted or control[t] != CONTROL_NONE:
                    counters[C_HALTED_BAR] += 1
                else:
                    entry_due, entry_decided = t + lat, t
                    entry_side = -1.0 if z[t] > 0 else 1.0
                    entry_beta, entry_scale = beta[t], min(scale[t], 1.0)
            if lat > 0:
                break
        equity_out[t] = equity
        units_a_out[t] = ua
        units_b_out[t] = ub
        t += 1
    if ua != 0.0 or ub != 0.0:  # close what is still open at the last close
        t = n - 1
        ca, cb = fixed_a + slip_a * factor[t], fixed_b + slip_b * factor[t]
        tr = trades[n_trades]
        tr[T_PNL], tr[T_CARRY] = trade_pnl, trade_carry
        equity -= _close(tr, ua, ub, pa[t], pb[t], ca, cb, t, EXIT_END)
        n_trades += 1
        equity_out[t] = equity
        units_a_out[t] = 0.0
        units_b_out[t] = 0.0
    return n_trades
