"""A straightforward pandas version of the pair features: the cross-check and speed reference.

Written from the definitions with pandas rolling/ewm operations, independently of the compiled
kernel, so tests can compare the two and benchmarks can measure the kernel against it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcore.config import PairFeatureWindows


def _true_range(h: pd.Series, lo: pd.Series, c: pd.Series) -> pd.Series:
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    tr.iloc[0] = h.iloc[0] - lo.iloc[0]
    return tr


def _ema(s: pd.Series, span: int) -> pd.Series:
    out: pd.Series = s.ewm(span=span, adjust=False).mean()
    return out


def _atr(bars: pd.DataFrame, leg: str, window: int) -> pd.Series:
    h, lo, c = bars[f"high_{leg}"], bars[f"low_{leg}"], bars[f"close_{leg}"]
    out: pd.Series = _true_range(h, lo, c).rolling(window).mean() / c
    return out


def reference_pair_features(bars: pd.DataFrame, w: PairFeatureWindows) -> pd.DataFrame:
    """Pair features from aligned bars (columns high_a, low_a, close_a, high_b, low_b, close_b)."""
    la = np.log(bars["close_a"])
    lb = np.log(bars["close_b"])
    x, y = lb - lb.iloc[0], la - la.iloc[0]
    roll = x.rolling(w.beta_window)
    beta = roll.cov(y) / roll.var()
    alpha = y.rolling(w.beta_window).mean() - beta * x.rolling(w.beta_window).mean()
    spread = y - beta * x - alpha
    z = (spread - spread.rolling(w.z_window).mean()) / spread.rolling(w.z_window).std()
    dz = z.diff()
    ds = spread.diff()
    atr_s = ds.abs().rolling(w.atr_window).mean()
    prev = spread.shift(1)
    b = prev.rolling(w.half_life_window).cov(ds) / prev.rolling(w.half_life_window).var()
    hl = np.where(
        b >= 0, w.half_life_cap_bars, np.minimum(w.half_life_cap_bars, -np.log(2) / np.log1p(b))
    )
    hl = np.where(b <= -1, 0.0, hl)
    hl = np.where(np.isnan(b), np.nan, hl)
    rho = la.diff().rolling(w.rho_window).corr(lb.diff())
    t = pd.Series(np.arange(len(spread), dtype=float), index=spread.index)
    slope = t.rolling(w.slope_window).cov(spread) / (
        (w.slope_window**2 - 1) / 12.0 * w.slope_window / (w.slope_window - 1)
    )
    gain = ds.clip(lower=0).ewm(alpha=1.0 / w.rsi_window, adjust=False).mean()
    loss = (-ds).clip(lower=0).ewm(alpha=1.0 / w.rsi_window, adjust=False).mean()
    rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    rsi = rsi.where(loss != 0, 100.0).where(loss.notna())
    dd = pd.concat(
        [spread.rolling(w.dd_window).max() - spread, spread - spread.rolling(w.dd_window).min()],
        axis=1,
    ).max(axis=1, skipna=False)
    return pd.DataFrame(
        {
            "beta": beta,
            "spread": spread,
            "z": z,
            "dz": dz,
            "z_ema": _ema(z, w.z_ema_span),
            "dz_ema": _ema(dz, w.dz_ema_span),
            "atr_spread": atr_s,
            "half_life": hl,
            "rho_rolling": rho,
            "rho_var": rho.rolling(w.rho_var_window).var(),
            "beta_stability": beta.rolling(w.beta_stability_window).std(),
            "atr_A": _true_range(bars["high_a"], bars["low_a"], bars["close_a"])
            .rolling(w.atr_window)
            .mean()
            / bars["close_a"],
            "atr_B": _true_range(bars["high_b"], bars["low_b"], bars["close_b"])
            .rolling(w.atr_window)
            .mean()
            / bars["close_b"],
            "atr_ratio": atr_s / atr_s.rolling(w.atr_long_window).mean(),
            "ema_gap_spread": _ema(spread, w.ema_fast_span) - _ema(spread, w.ema_slow_span),
            "slope_spread": slope,
            "rsi_spread": rsi,
            "dd_recent": dd,
        }
    )
