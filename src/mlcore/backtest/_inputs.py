"""What the engine needs of a pair, bar by bar: leg closes in the account currency, β and z from
the pair features, the model outputs, the legs' ATR (for the stress scenarios) and the
time-of-day slippage factor of the fill (at the bar's close).

AI1 is asked only where it was trained to answer: at the bars where an AI1 event opens (z enters
the ±entry_z band) and is not excluded by the speed filter, as ``mlcore.labels.ai1_events``
defines them per unbroken segment. Elsewhere ``prob`` is NaN, which no θ1 passes.

A leg quoted in another currency is converted with the latest close of its FX instrument
(``QUOTE/ACCOUNT`` multiplies, ``ACCOUNT/QUOTE`` divides) at or before the bar. When that close
is older than ``fx_stale_seconds`` the bar is blocked for new entries and marked with the last
rate that was fresh; a leg with no FX instrument in the universe is refused outright.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcore.config import TIMEFRAMES, AppConfig, PairSpec
from mlcore.data import Catalog
from mlcore.errors import MissingDataError, MissingInputError
from mlcore.execution import PairModels, slippage_factors
from mlcore.features import build_pair_features, load_pair_features
from mlcore.labels import ai1_events

ATR_BARS = 14


@dataclass
class PairBars:
    """One pair's bars, aligned; prices in the account currency."""

    pair_id: str
    ts_ns: np.ndarray
    price_a: np.ndarray
    price_b: np.ndarray
    beta: np.ndarray
    z: np.ndarray
    prob: np.ndarray
    risk: np.ndarray
    scale: np.ndarray
    atr_a: np.ndarray
    atr_b: np.ndarray
    slippage: np.ndarray
    fx_blocked: np.ndarray

    def window(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> PairBars:
        """The bars with ``start <= ts < end`` (either bound may be open)."""
        lo = 0 if start is None else int(np.searchsorted(self.ts_ns, start.value, side="left"))
        hi = len(self.ts_ns) if end is None else int(np.searchsorted(self.ts_ns, end.value))
        cut = {k: v[lo:hi] for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        return PairBars(pair_id=self.pair_id, **cut)

    def entry_prob(self) -> np.ndarray:
        """AI1's probability where entries are allowed, NaN (no entry) where FX is stale."""
        out: np.ndarray = np.where(self.fx_blocked, np.nan, self.prob)
        return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, bars: int = ATR_BARS) -> np.ndarray:
    """Average true range over ``bars`` bars (simple mean; the first bars use what exists)."""
    prev = np.r_[close[0], close[:-1]]
    tr = np.maximum.reduce([high - low, np.abs(high - prev), np.abs(low - prev)])
    out: np.ndarray = pd.Series(tr).rolling(bars, min_periods=1).mean().to_numpy()
    return out


def fx_rate(
    quote: str, account: str, ts_ns: np.ndarray, load: Callable[[str], pd.DataFrame],
    instruments: set[str], stale_seconds: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(rate to multiply a ``quote``-currency price by, stale mask) per bar. ``load(symbol)``
    returns its bars (``ts``, ``close``)."""
    n = len(ts_ns)
    if quote == account:
        return np.ones(n), np.zeros(n, dtype=bool)
    direct, inverse = f"{quote}/{account}", f"{account}/{quote}"
    symbol = direct if direct in instruments else inverse if inverse in instruments else None
    if symbol is None:
        raise MissingInputError(
            "UNIVERSE_FX_MISSING",
            f"no FX instrument to convert {quote} into {account}: universe.yaml needs {direct} "
            f"or {inverse} (add one and ingest its bars)",
            details={"quote": quote, "account": account},
        )
    fx = load(symbol)
    if fx.empty:
        raise _no_fx_bars(symbol, stale_seconds)
    fx_ts = pd.DatetimeIndex(fx["ts"]).as_unit("ns").asi8
    close = fx["close"].to_numpy(dtype=np.float64)
    at = np.searchsorted(fx_ts, ts_ns, side="right") - 1
    known = at >= 0
    age_s = np.where(known, (ts_ns - fx_ts[np.maximum(at, 0)]) / 1e9, np.inf)
    stale = age_s > stale_seconds
    rate = np.where(known, close[np.maximum(at, 0)], np.nan)
    if symbol == inverse:
        rate = 1.0 / rate
    # Marked at the last fresh rate; before any fresh rate the bar has no price at all.
    fresh = pd.Series(np.where(stale, np.nan, rate)).ffill().to_numpy()
    if np.isnan(fresh).all():
        raise _no_fx_bars(symbol, stale_seconds)
    return fresh, stale


def _no_fx_bars(symbol: str, stale_seconds: int) -> MissingDataError:
    return MissingDataError(
        "DATA_FX_NO_BARS",
        f"{symbol}: no FX close within {stale_seconds} s of any bar; ingest {symbol} bars "
        "covering the backtest's period first",
        details={"symbol": symbol},
    )


def event_bars(cfg: AppConfig, feats: pd.DataFrame, timeframe: str) -> np.ndarray:
    """Where AI1 events open (not excluded), segment by segment, as training found them."""
    ts = pd.DatetimeIndex(feats["ts"]).as_unit("ns").asi8
    event = np.zeros(len(feats), dtype=bool)
    for _, seg in feats.groupby("segment", sort=True):
        idx = seg.index.to_numpy()
        ev = ai1_events(
            ts[idx],
            seg["z"].to_numpy(),
            np.abs(seg["dz_ema"].to_numpy()),
            cfg.core.labels_at(timeframe).ai1,
        )
        event[idx[ev.loc[~ev["excluded"], "t0"].to_numpy()]] = True
    return event


def pair_bars(
    cfg: AppConfig, cat: Catalog, models: PairModels, pair: PairSpec, timeframe: str
) -> PairBars:
    """Score every bar of the pair's features with the version's models."""
    build_pair_features(cfg, cat, pair, timeframe)
    feats = load_pair_features(cfg, pair.pair_id, timeframe).reset_index(drop=True)
    ts = pd.DatetimeIndex(feats["ts"]).as_unit("ns").asi8
    event = event_bars(cfg, feats, timeframe)
    account = cfg.backtest.account
    legs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    blocked = np.zeros(len(ts), dtype=bool)

    def load(symbol: str) -> pd.DataFrame:
        return cat.load_bars(timeframe, symbol)

    for symbol in (pair.leg_a, pair.leg_b):
        bars = load(symbol).set_index("ts").reindex(feats["ts"])
        quote = cfg.universe.instruments[symbol].quote_currency
        rate, stale = fx_rate(
            quote, account.currency, ts, load, set(cfg.universe.instruments),
            account.fx_stale_seconds,
        )  # fmt: skip
        blocked |= stale
        cols = [bars[c].to_numpy(dtype=np.float64) * rate for c in ("close", "high", "low")]
        legs.append((cols[0], atr(cols[1], cols[2], cols[0]), rate))
    prices_ok = np.isfinite(legs[0][0]) & np.isfinite(legs[1][0])
    if not prices_ok.all():
        # Bars before the first fresh FX rate have no account-currency price: dropped.
        keep = np.flatnonzero(prices_ok)
        feats = feats.iloc[keep].reset_index(drop=True)
        ts, blocked, event = ts[keep], blocked[keep], event[keep]
        legs = [(p[keep], a[keep], r[keep]) for p, a, r in legs]
    prob, risk, scale = models.score(feats)
    prob = np.where(event, prob, np.nan)
    return PairBars(
        pair_id=pair.pair_id,
        ts_ns=ts,
        price_a=legs[0][0],
        price_b=legs[1][0],
        beta=feats["beta"].to_numpy(dtype=np.float64),
        z=feats["z"].to_numpy(dtype=np.float64),
        prob=prob,
        risk=risk,
        scale=scale,
        atr_a=legs[0][1],
        atr_b=legs[1][1],
        # Fills happen at the bar's close: its time of day is the bar's start plus its length.
        slippage=slippage_factors(cfg.costs, ts + TIMEFRAMES[timeframe] * 1_000_000_000),
        fx_blocked=blocked,
    )
