"""Data-quality rules on one symbol's bar history (pure computation, no I/O).

Rules (thresholds from ``pipeline_policy.dq_thresholds``):

- runs of up to ``max_fill_bars`` missing bars are filled — open forward-filled from the last
  close, close linearly interpolated, high/low spanning them, volume 0 — and flagged ``filled``;
- longer runs are left empty and reported so the partition is quarantined;
- a close-to-close log move beyond ``outlier_sigma`` robust sigmas of the trailing
  ``sigma_window_bars`` moves is a bad print when the price stays at the wrong level for at
  most ``max_fill_bars`` bars and then comes back by at least ``spike_retrace_ratio`` of the
  move: those bars are excluded (kept in
  the excluded rows), refilled by interpolation and flagged ``outlier``; a move that holds is
  a real jump, kept and flagged ``spike``; but a move by a factor of ten or more
  (``MAX_JUMP_FACTOR``, the live guard's rule) is never a price, whatever sigma or how long it
  lasts: every bar at that level is an ``outlier`` (three closes of 1e-300 mid-file, or one as
  a file's last bar, were kept as ``spike``/``ok``; a worker warmed from such a last close
  refused every real bar after it);
- a timestamp delivered twice with different values is flagged ``conflict`` (last delivery kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcore.config import DQThresholds

FLAGS = ("ok", "filled", "outlier", "spike", "conflict")
_MAD_TO_SIGMA = 1.4826
MAX_JUMP_FACTOR = 10.0  # a move of a factor of ten or more is a feed or scale error
_MAX_JUMP = float(np.log(MAX_JUMP_FACTOR))


@dataclass(frozen=True)
class Gap:
    """A run of expected bars that did not arrive."""

    start: pd.Timestamp
    end: pd.Timestamp
    n_bars: int
    filled: bool


@dataclass
class DQResult:
    """Canonical bars, excluded originals, and the gaps and extras found."""

    bars: pd.DataFrame  # ts, open, high, low, close, volume, quality_flag
    excluded: pd.DataFrame  # ts, open, high, low, close, volume, reason
    gaps: list[Gap]
    missing_ts: pd.DatetimeIndex  # every expected bar that was missing (filled or not)
    off_calendar_ts: pd.DatetimeIndex  # bars that arrived outside the calendar (kept)


def _robust_sigma(ret: np.ndarray, window: int, min_bars: int) -> np.ndarray:
    """Trailing robust sigma of returns, excluding the current one (no look-ahead)."""
    s = pd.Series(np.abs(ret))
    med = s.rolling(window, min_periods=min_bars).median().shift(1)
    return np.asarray(med.to_numpy() * _MAD_TO_SIGMA)


def trailing_sigmas(ret: np.ndarray, th: DQThresholds) -> np.ndarray:
    """Each bar's robust sigma from the moves before it: the larger of the long and the short
    trailing median, NaN until the long window has ``sigma_min_bars`` values."""
    long_sigma = _robust_sigma(ret, th.sigma_window_bars, th.sigma_min_bars)
    short_sigma = _robust_sigma(ret, th.sigma_short_bars, th.sigma_short_bars)
    return np.asarray(np.where(np.isnan(long_sigma), np.nan, np.fmax(long_sigma, short_sigma)))


def classify_moves(close: np.ndarray, th: DQThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Return boolean masks (outlier, spike) over bars from close-to-close moves."""
    n = len(close)
    outlier = np.zeros(n, dtype=bool)
    spike = np.zeros(n, dtype=bool)
    if n < 2:
        return outlier, spike
    logc = np.log(close)
    ret = np.empty(n)
    ret[0] = 0.0
    ret[1:] = np.diff(logc)
    # The larger of a long and a short trailing sigma: in a calm market a bad print stands out
    # against both; in a crash (whipsaw days of ±10%) the short window has caught up with the
    # regime, so real moves are not taken for bad prints. Before the long window has
    # sigma_min_bars moves nothing is judged: a median of 20 moves alone is too noisy (a 3-sigma
    # move was flagged as a spike at bar 20 of a plain random walk).
    sigma = trailing_sigmas(ret, th)
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero((np.abs(ret) > th.outlier_sigma * sigma) | (np.abs(ret) >= _MAX_JUMP))
    for t in (int(x) for x in cand):
        if t == 0 or outlier[t]:
            continue
        prev = t - 1
        while prev >= 0 and outlier[prev]:
            prev -= 1
        if prev < 0:
            continue
        move = logc[t] - logc[prev]
        if abs(move) >= _MAX_JUMP:
            _tenfold(logc, t, prev, outlier, th)
            continue
        if sigma[t] <= 0 or not np.isfinite(sigma[t]):
            continue
        if abs(move) <= th.outlier_sigma * sigma[t]:
            continue  # the move was only large against a bad print just excluded
        run = _bad_print_run(logc, t, prev, move, th)
        if run:
            outlier[t : t + run] = True
        else:
            spike[t] = True
    return outlier, spike


def _tenfold(logc: np.ndarray, t: int, prev: int, outlier: np.ndarray, th: DQThresholds) -> None:
    """Mark the bars from ``t`` that stay at its level (nearer to it than to the close at
    ``prev``, a factor of ten or more away). When ``prev`` is the history's first bar and the
    new level holds beyond a bad print's length, that first bar is the bad one (else one bad
    first row would take every later bar)."""
    end = t + 1
    while end < len(logc) and abs(logc[end] - logc[t]) < abs(logc[end] - logc[prev]):
        end += 1
    if prev == 0 and end - t > max(1, th.max_fill_bars):
        outlier[0] = True
        return
    outlier[t:end] = True


def _bad_print_run(logc: np.ndarray, t: int, prev: int, move: float, th: DQThresholds) -> int:
    """Length of a bad print starting at ``t`` (0 when the move holds: a real jump).

    A bad print is a plateau of up to ``max_fill_bars`` bars at the wrong level, after which
    the price is back: the next bar retraces at least ``spike_retrace_ratio`` of the move.
    Bars of the plateau must stay within ``1 - spike_retrace_ratio`` of the move from the
    bad level, so a real move that unwinds over several bars is not taken for one.
    """
    band = (1.0 - th.spike_retrace_ratio) * abs(move)
    for k in range(1, max(1, th.max_fill_bars) + 1):
        j = t + k
        if j >= len(logc):
            return 0
        if (logc[j] - logc[prev]) / move <= 1.0 - th.spike_retrace_ratio:
            return k
        if abs(logc[j] - logc[t]) > band:
            return 0
    return 0


def _fill_run(prev_close: float, next_close: float, run: pd.DatetimeIndex) -> pd.DataFrame:
    k = len(run)
    frac = np.arange(1, k + 1) / (k + 1)
    close = prev_close + (next_close - prev_close) * frac
    opens = np.concatenate([[prev_close], close[:-1]])
    return pd.DataFrame(
        {
            "ts": run,
            "open": opens,
            "high": np.maximum(opens, close),
            "low": np.minimum(opens, close),
            "close": close,
            "volume": 0.0,
            "quality_flag": "filled",
        }
    )


def _runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted integer positions into (start, stop) runs of consecutive values."""
    if len(positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks + 1, [len(positions)]])
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _repair_outliers(bars: pd.DataFrame, outlier: np.ndarray) -> pd.DataFrame:
    """Replace bad prints by interpolation between the neighbouring good closes."""
    if not outlier.any():
        return bars
    close = bars["close"].to_numpy().copy()
    good = ~outlier
    idx = np.arange(len(close))
    close[outlier] = np.interp(idx[outlier], idx[good], close[good])
    prev_close = np.concatenate([[close[0]], close[:-1]])
    out = bars.copy()
    out.loc[outlier, "close"] = close[outlier]
    out.loc[outlier, "open"] = prev_close[outlier]
    out.loc[outlier, "high"] = np.maximum(prev_close, close)[outlier]
    out.loc[outlier, "low"] = np.minimum(prev_close, close)[outlier]
    out.loc[outlier, "volume"] = 0.0
    return out


def _fill_gaps(
    bars: pd.DataFrame, grid: pd.DatetimeIndex, th: DQThresholds
) -> tuple[pd.DataFrame, list[Gap], pd.DatetimeIndex]:
    present = grid.isin(pd.DatetimeIndex(bars["ts"]))
    missing_pos = np.flatnonzero(~present)
    gaps: list[Gap] = []
    fills: list[pd.DataFrame] = []
    ts_arr = pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8
    close_arr = bars["close"].to_numpy()
    for a, b in _runs(missing_pos):
        run = grid[missing_pos[a:b]]
        n_missing = b - a
        fill = n_missing <= th.max_fill_bars
        gaps.append(Gap(run[0], run[-1], n_missing, fill))
        if fill:
            i_next = int(np.searchsorted(ts_arr, run[-1].as_unit("ns").value, side="right"))
            fills.append(_fill_run(close_arr[i_next - 1], close_arr[i_next], run))
    out = pd.concat([bars, *fills], ignore_index=True) if fills else bars
    return out.sort_values("ts", kind="stable").reset_index(drop=True), gaps, grid[~present]


def run_dq(raw: pd.DataFrame, grid: pd.DatetimeIndex, th: DQThresholds) -> DQResult:
    """Apply every DQ rule to ``raw`` (unique, sorted ts; a ``conflict`` bool column).

    ``grid`` holds the expected bar times between the first and last raw bar.
    """
    cols = ["ts", "open", "high", "low", "close", "volume"]
    bars = raw[cols].reset_index(drop=True).copy()
    close = bars["close"].to_numpy(dtype="float64")
    outlier, spike = classify_moves(close, th)
    flag = np.full(len(bars), "ok", dtype=object)
    flag[np.asarray(raw["conflict"].to_numpy(), dtype=bool)] = "conflict"
    flag[spike] = "spike"
    flag[outlier] = "outlier"
    excluded = bars.loc[outlier].copy()
    excluded["reason"] = "outlier"
    bars = _repair_outliers(bars, outlier)
    bars["quality_flag"] = flag
    if len(bars):
        inner = grid[(grid >= bars["ts"].iloc[0]) & (grid <= bars["ts"].iloc[-1])]
    else:
        inner = grid[:0]
    off_calendar = pd.DatetimeIndex(bars["ts"])[~pd.DatetimeIndex(bars["ts"]).isin(inner)]
    bars, gaps, missing = _fill_gaps(bars, inner, th)
    bars["quality_flag"] = bars["quality_flag"].astype("string")
    return DQResult(
        bars=bars,
        excluded=excluded.reset_index(drop=True),
        gaps=gaps,
        missing_ts=missing,
        off_calendar_ts=off_calendar,
    )
