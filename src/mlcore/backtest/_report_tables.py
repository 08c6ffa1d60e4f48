"""The report's computed tables, as pure functions of the stored results: monthly returns,
the per-pair breakdown and the trades listing (each tested against an independent computation),
and their HTML with a unit in every cell."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcore.backtest._report_format import DASH, Cell, is_missing, naive_utc, pct, table, usd

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: trades listed in the report at most (all of them are in bt_trades.parquet)
MAX_TRADES = 200
_SIDES = {1: "long spread (long A, short B)", -1: "short spread (short A, long B)"}


def monthly_returns(returns: pd.Series) -> pd.DataFrame:
    """Compounded returns (fractions) of each calendar month from daily returns: one row per
    year, columns 1..12 (NaN for a month without a day) and "year", the year's compounded total
    over the days it has."""
    r = pd.to_numeric(returns, errors="coerce").dropna().sort_index()
    r = r.set_axis(naive_utc(r.index))
    columns = [*range(1, 13), "year"]
    if r.empty:
        return pd.DataFrame(columns=columns, dtype=np.float64)
    index = pd.DatetimeIndex(r.index)
    growth = 1.0 + r
    month = growth.groupby([index.year, index.month]).prod() - 1.0
    out = month.unstack().reindex(columns=range(1, 13))
    out["year"] = growth.groupby(index.year).prod() - 1.0
    out.index.name = "year"
    out.columns = pd.Index(columns, dtype=object)
    return out.astype(np.float64)


def _max_drawdown(equity: np.ndarray, capital: float) -> float:
    path = np.r_[capital, equity]
    peak = np.maximum.accumulate(path)
    return max(0.0, float(-np.min(path / peak - 1.0)))


def pair_breakdown(trades: pd.DataFrame, pair_equity: dict[str, pd.Series]) -> pd.DataFrame:
    """Per pair: trades, win rate, P&L (USD), return on the pair's capital, max drawdown of its
    daily equity (fractions), average holding (bars), costs and carry (USD). A pair's capital is
    its last equity less its trades' P&L (every position is closed by the end)."""
    cols = ["trades", "win_rate", "pnl_usd", "return", "max_drawdown", "avg_bars_held",
            "cost_usd", "carry_usd"]  # fmt: skip
    has = set(trades.columns) if len(trades.columns) else set()
    ids = set(map(str, pair_equity))
    if "pair_id" in has:
        ids |= set(trades["pair_id"].astype(str))
    rows = {}
    for pid in sorted(ids):
        t = trades[trades["pair_id"].astype(str) == pid] if "pair_id" in has else trades.iloc[:0]
        pnl = pd.to_numeric(t["pnl_usd"], errors="coerce") if "pnl_usd" in has else None
        total = float(pnl.sum()) if pnl is not None else np.nan
        row = {
            "trades": float(len(t)),
            "win_rate": float((pnl > 0).mean()) if pnl is not None and len(t) else np.nan,
            "pnl_usd": total,
            "return": np.nan,
            "max_drawdown": np.nan,
            "avg_bars_held": float(t["bars_held"].mean()) if "bars_held" in has and len(t)
            else np.nan,
            "cost_usd": float(t["cost_usd"].sum()) if "cost_usd" in has else np.nan,
            "carry_usd": float(t["carry_usd"].sum()) if "carry_usd" in has else np.nan,
        }  # fmt: skip
        series = pd.to_numeric(pair_equity.get(pid, pd.Series(dtype=np.float64)), errors="coerce")
        equity = series.dropna().sort_index().to_numpy(dtype=np.float64)
        if len(equity) and np.isfinite(total):
            capital = float(equity[-1]) - total
            if capital > 0:
                row["return"] = float(equity[-1]) / capital - 1.0
                row["max_drawdown"] = _max_drawdown(equity, capital)
        rows[pid] = row
    out = pd.DataFrame.from_dict(rows, orient="index", columns=cols, dtype=np.float64)
    out.index.name = "pair_id"
    return out


def trades_listing(trades: pd.DataFrame, limit: int = MAX_TRADES) -> pd.DataFrame:
    """The first ``limit`` trades by entry time (then pair): pair, entry and exit time, side,
    holding bars, P&L, costs and exit reason."""
    wanted = ["pair_id", "entry_ts", "exit_ts", "side", "bars_held", "pnl_usd", "cost_usd",
              "exit_reason"]  # fmt: skip
    out = trades[[c for c in wanted if c in trades.columns]]
    keys = [c for c in ("entry_ts", "pair_id") if c in out.columns]
    if keys:
        out = out.sort_values(keys, kind="stable")
    return out.head(limit).reset_index(drop=True)


# ---------------------------------------------------------------- HTML


def _n(text: str) -> Cell:
    return (text, "num")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def monthly_table(monthly: pd.DataFrame) -> str:
    header = ["year", *(f"{m} (%)" for m in MONTHS), "year total (%)"]
    rows: list[list[Cell]] = []
    for year, row in monthly.iterrows():
        cells: list[Cell] = [str(year)]
        for col in [*range(1, 13), "year"]:
            v = row[col]
            cls = "num" if is_missing(v) else "num neg" if v < 0 else "num pos"
            cells.append((pct(v), cls + (" total" if col == "year" else "")))
        rows.append(cells)
    return table(header, rows, "monthly")


def pairs_table(breakdown: pd.DataFrame) -> str:
    header = ["pair", "trades", "win rate (%)", "P&L (USD)", "return (%)", "max drawdown (%)",
              "avg holding (bars)", "costs (USD)", "carry (USD)"]  # fmt: skip
    rows: list[list[Cell]] = []
    for pid, r in breakdown.iterrows():
        bars = DASH if is_missing(r["avg_bars_held"]) else f"{r['avg_bars_held']:,.1f} bars"
        rows.append([
            str(pid), _n(_count(int(r["trades"]), "trade")), _n(pct(r["win_rate"], 1)),
            _n(usd(r["pnl_usd"])), _n(pct(r["return"])), _n(pct(r["max_drawdown"])), _n(bars),
            _n(usd(r["cost_usd"])), _n(usd(r["carry_usd"])),
        ])  # fmt: skip
    return table(header, rows)


def _when(value: object) -> str:
    if is_missing(value):
        return DASH
    ts = pd.Timestamp(value)  # type: ignore[arg-type]
    ts = ts.tz_convert("UTC") if ts.tzinfo is not None else ts
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def trades_table(listing: pd.DataFrame) -> str:
    header = ["#", "pair", "entry (UTC)", "exit (UTC)", "side", "holding (bars)", "P&L (USD)",
              "costs (USD)", "exit reason"]  # fmt: skip
    rows: list[list[Cell]] = []
    for i, r in enumerate(listing.to_dict("records"), start=1):
        side = r.get("side")
        bars = r.get("bars_held")
        pnl = r.get("pnl_usd")
        rows.append([
            _n(f"{i:,}"), str(r.get("pair_id", DASH)), _when(r.get("entry_ts")),
            _when(r.get("exit_ts")),
            DASH if is_missing(side) else _SIDES.get(int(side), str(side)),  # type: ignore[arg-type]
            _n(DASH if is_missing(bars) else f"{int(bars):,} bars"),  # type: ignore[arg-type]
            (usd(pnl), "num neg" if not is_missing(pnl) and pnl < 0 else "num"),  # type: ignore[operator]
            _n(usd(r.get("cost_usd"))), str(r.get("exit_reason", DASH)),
        ])  # fmt: skip
    return table(header, rows, "trades")
