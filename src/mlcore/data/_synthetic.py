"""Synthetic markets for the demo and tests: cointegrated pairs with known beta and half-life,
a regime break where the relation fails, optionally spreads whose reversion speed switches
between regimes, GARCH volatility clustering, and faults planted at recorded places so that
every data-quality rule is exercised."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES, CalendarSpec
from mlcore.data._calendar import expected_grid

_SECONDS_PER_YEAR = 365.25 * 86400


@dataclass(frozen=True)
class SyntheticPair:
    """Truth of a generated pair: log A = alpha + beta * log B + spread, spread is OU."""

    pair_id: str
    leg_a: str
    leg_b: str
    beta: float
    alpha: float
    half_life_bars: float
    price_b0: float
    annual_vol_b: float
    spread_sigma: float
    break_start_frac: float
    break_len_bars: int
    # Optional reversion regimes: the spread's half-life switches between these two (0 = no
    # reversion, a random walk) as a Markov chain with this mean regime length in bars.
    regime_half_lives: tuple[float, float] | None = None
    regime_mean_bars: int = 0


@dataclass
class PlantedFault:
    """A fault put into the data on purpose, and what ingestion must make of it."""

    symbol: str
    kind: str  # gap_filled | gap_quarantine | bad_print | real_jump | duplicate | conflict | reject
    ts: str
    n_bars: int = 1
    expect: str = ""


@dataclass
class SyntheticMarket:
    """Generated bars per symbol plus the truth and the faults planted."""

    bars: dict[str, pd.DataFrame]
    pairs: list[SyntheticPair]
    faults: list[PlantedFault] = field(default_factory=list)
    regime_breaks: dict[str, tuple[str, str]] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """JSON-able truth: pair parameters, regime breaks and planted faults."""
        return {
            "pairs": [asdict(p) for p in self.pairs],
            "regime_breaks": {k: list(v) for k, v in self.regime_breaks.items()},
            "faults": [asdict(f) for f in self.faults],
        }


def _garch_returns(rng: np.random.Generator, n: int, sigma_bar: float) -> np.ndarray:
    """GARCH(1,1) returns with unconditional per-bar sigma ``sigma_bar``."""
    a, b = 0.06, 0.92
    omega = sigma_bar**2 * (1 - a - b)
    z = rng.standard_t(df=6, size=n) / math.sqrt(6 / 4)
    r = np.empty(n)
    var = sigma_bar**2
    for t in range(n):
        r[t] = math.sqrt(var) * z[t]
        var = omega + a * r[t] ** 2 + b * var
    return r


def _phi(half_life: float) -> float:
    return 0.5 ** (1.0 / half_life) if half_life > 0 else 1.0


def _ou_spread(
    rng: np.random.Generator, n: int, spec: SyntheticPair, brk: tuple[int, int]
) -> np.ndarray:
    eps = rng.normal(0.0, spec.spread_sigma, size=n)
    phi = np.full(n, _phi(spec.half_life_bars))
    if spec.regime_half_lives is not None:
        if spec.regime_mean_bars < 1:
            raise ValueError("regime_mean_bars must be >= 1 when regime_half_lives is set")
        state = np.cumsum(rng.uniform(size=n) < 1.0 / spec.regime_mean_bars) % 2
        phi = np.where(state == 0, *(_phi(h) for h in spec.regime_half_lives))
    s = np.empty(n)
    s[0] = 0.0
    for t in range(1, n):
        # Inside the regime break the spread is a random walk: the relation fails.
        k = 1.0 if brk[0] <= t < brk[1] else phi[t]
        s[t] = k * s[t - 1] + eps[t]
    return s


def _ohlc(
    rng: np.random.Generator, ts: pd.DatetimeIndex, logc: np.ndarray, sigma_bar: float
) -> pd.DataFrame:
    close = np.exp(logc)
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.35 * sigma_bar, size=(2, len(close))))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(rng.lognormal(mean=6.0, sigma=0.5, size=len(close)))
    return pd.DataFrame(
        {"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def generate_pair(
    spec: SyntheticPair,
    calendar: CalendarSpec,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[pd.Timestamp, pd.Timestamp]]:
    """Clean bars of both legs on the calendar's grid, and the regime-break window."""
    rng = np.random.default_rng(seed)
    ts = expected_grid(calendar, timeframe, start, end)
    n = len(ts)
    sigma_bar = spec.annual_vol_b * math.sqrt(TIMEFRAMES[timeframe] / _SECONDS_PER_YEAR)
    log_b = math.log(spec.price_b0) + np.cumsum(_garch_returns(rng, n, sigma_bar))
    b0 = int(n * spec.break_start_frac)
    brk = (b0, min(n, b0 + spec.break_len_bars))
    spread = _ou_spread(rng, n, spec, brk)
    log_a = spec.alpha + spec.beta * log_b + spread
    sig_a = max(sigma_bar * spec.beta, spec.spread_sigma)
    bars_a = _ohlc(rng, ts, log_a, sig_a)
    bars_b = _ohlc(rng, ts, log_b, sigma_bar)
    return bars_a, bars_b, (ts[brk[0]], ts[max(brk[0], brk[1] - 1)])


def _drop(frame: pd.DataFrame, idx: list[int]) -> pd.DataFrame:
    return frame.drop(index=frame.index[idx]).reset_index(drop=True)


def _shift_from(frame: pd.DataFrame, i: int, factor: float) -> None:
    for col in ("open", "high", "low", "close"):
        frame.loc[frame.index[i] :, col] *= factor
    # The jump happens inside bar i: its open stays at the previous close.
    frame.loc[frame.index[i], "open"] /= factor
    row = frame.loc[frame.index[i]]
    frame.loc[frame.index[i], "high"] = max(row["high"], row["open"], row["close"])
    frame.loc[frame.index[i], "low"] = min(row["low"], row["open"], row["close"])


def _bad_print(frame: pd.DataFrame, i: int, factor: float) -> None:
    row = frame.loc[frame.index[i]]
    close = row["close"] * factor
    frame.loc[frame.index[i], "close"] = close
    frame.loc[frame.index[i], "high"] = max(row["high"], close)
    frame.loc[frame.index[i], "low"] = min(row["low"], close)
    nxt = frame.index[i + 1]
    frame.loc[nxt, "open"] = close
    frame.loc[nxt, "high"] = max(frame.loc[nxt, "high"], close)
    frame.loc[nxt, "low"] = min(frame.loc[nxt, "low"], close)


def _iso(frame: pd.DataFrame, i: int) -> str:
    return pd.Timestamp(frame["ts"].iloc[i]).isoformat()


def plant_faults(
    frame: pd.DataFrame, symbol: str, rng: np.random.Generator
) -> tuple[pd.DataFrame, list[PlantedFault]]:
    """Plant one of each fault into a clean leg at recorded, well-separated places."""
    n = len(frame)
    if n < 2000:
        raise ValueError(f"need at least 2000 bars to plant faults, got {n}")
    out = frame.copy()
    faults: list[PlantedFault] = []
    p = [int(n * f) for f in (0.15, 0.25, 0.35, 0.45, 0.55, 0.65)]
    p = [int(i + rng.integers(0, 50)) for i in p]
    r = np.diff(np.log(out["close"].to_numpy()))
    sigma = 1.4826 * float(np.median(np.abs(r)))
    # Price faults first (positions are still the clean grid's); sized far beyond the 8-sigma rule.
    _bad_print(out, p[2], math.exp(25 * sigma))
    faults.append(PlantedFault(symbol, "bad_print", _iso(out, p[2]), 1, "outlier"))
    _shift_from(out, p[3], math.exp(20 * sigma))
    faults.append(PlantedFault(symbol, "real_jump", _iso(out, p[3]), 1, "spike"))
    # Duplicates: an exact repeat and a conflicting re-delivery.
    dup = out.iloc[[p[4]]].copy()
    faults.append(PlantedFault(symbol, "duplicate", _iso(out, p[4]), 1, "dropped"))
    conf = out.iloc[[p[5]]].copy()
    conf["close"] = conf["close"] * 1.0005
    conf["high"] = np.maximum(conf["high"], conf["close"])
    faults.append(PlantedFault(symbol, "conflict", _iso(out, p[5]), 1, "conflict"))
    # Gaps: one bar and two bars (filled).
    faults.append(PlantedFault(symbol, "gap_filled", _iso(out, p[0]), 1, "filled"))
    faults.append(PlantedFault(symbol, "gap_filled", _iso(out, p[1]), 2, "filled"))
    out = pd.concat([out, dup, conf], ignore_index=True)
    out = _drop(out, [p[0], p[1], p[1] + 1])
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    return out, faults


def plant_quarantine_gap(
    frame: pd.DataFrame, symbol: str, month: str, n_bars: int
) -> tuple[pd.DataFrame, PlantedFault]:
    """Remove ``n_bars`` consecutive bars in the middle of ``month`` (a gap to quarantine)."""
    months = pd.DatetimeIndex(frame["ts"]).strftime("%Y-%m")
    idx = np.flatnonzero(np.asarray(months == month))
    if len(idx) < n_bars + 2:
        raise ValueError(f"{symbol}: month {month} has too few bars for a {n_bars}-bar gap")
    mid = int(idx[len(idx) // 2])
    fault = PlantedFault(symbol, "gap_quarantine", _iso(frame, mid), n_bars, "quarantine")
    return _drop(frame, list(range(mid, mid + n_bars))), fault


def default_pairs() -> list[SyntheticPair]:
    """The demo universe: metals, FX and crypto pairs with known truth."""
    return [
        SyntheticPair(
            "XAU_XAG", "XAU/USD", "XAG/USD", 0.85, 5.0, 48.0, 25.0, 0.22, 0.004, 0.7, 400
        ),
        SyntheticPair(
            "EUR_GBP", "EUR/USD", "GBP/USD", 0.9, -0.05, 72.0, 1.27, 0.08, 0.0012, 0.6, 300
        ),
        SyntheticPair(
            "BTC_ETH", "BTC/USD", "ETH/USD", 1.1, 1.4, 36.0, 2500.0, 0.6, 0.006, 0.75, 500
        ),
    ]


def regime_pairs(mean_bars: int = 600) -> list[SyntheticPair]:
    """The demo universe with reversion regimes: each spread alternates between a fast half-life
    of 12 bars and no reversion at all, regimes lasting ``mean_bars`` on average. Whether a
    stretched spread comes back depends on the regime, which the pair features can see."""
    return [
        replace(p, regime_half_lives=(12.0, 0.0), regime_mean_bars=mean_bars)
        for p in default_pairs()
    ]


def generate_market(
    calendars: dict[str, CalendarSpec],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    seed: int,
    *,
    pairs: list[SyntheticPair] | None = None,
    with_faults: bool = True,
    quarantine: tuple[str, str, int] | None = None,
) -> SyntheticMarket:
    """Generate every pair's legs; ``calendars`` maps leg symbol to its calendar."""
    pairs = pairs or default_pairs()
    rng = np.random.default_rng(seed)
    market = SyntheticMarket(bars={}, pairs=pairs)
    for k, spec in enumerate(pairs):
        cal = calendars[spec.leg_a]
        a, b, brk = generate_pair(spec, cal, timeframe, start, end, seed * 1000 + k)
        market.regime_breaks[spec.pair_id] = (brk[0].isoformat(), brk[1].isoformat())
        for sym, frame in ((spec.leg_a, a), (spec.leg_b, b)):
            if with_faults:
                frame, faults = plant_faults(frame, sym, rng)
                market.faults.extend(faults)
            market.bars[sym] = frame
    if quarantine is not None:
        sym, month, n = quarantine
        market.bars[sym], fault = plant_quarantine_gap(market.bars[sym], sym, month, n)
        market.faults.append(fault)
    return market


def malformed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that break each reject rule, as text, to append to a CSV of ``frame``."""
    base = frame.iloc[len(frame) // 2]
    t = pd.Timestamp(base["ts"])
    fmt = "%Y-%m-%d %H:%M:%S"
    rows = [
        ("2024-13-45 25:00:00", base["open"], base["high"], base["low"], base["close"]),
        (
            (t + pd.Timedelta(minutes=7)).strftime(fmt),
            base["open"],
            base["high"],
            base["low"],
            base["close"],
        ),
        (t.strftime(fmt), -1.0, base["high"], base["low"], base["close"]),
        (t.strftime(fmt), base["open"], base["low"] * 0.99, base["high"], base["close"]),
        (t.strftime(fmt), base["open"], base["high"], base["low"], float("nan")),
    ]
    return pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close"]).assign(volume=100.0)
