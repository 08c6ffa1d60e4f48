"""Text and HTML building blocks of the backtest report: numbers with their units, escaped
tables, sections and plotly divs with fixed ids (so the same inputs give the same bytes)."""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.io as pio  # type: ignore[import-untyped]

NO_DATA = "no data"
DASH = "—"
TEMPLATE = "plotly_white"
PLOT_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
PASS, FAIL = "#1a7f37", "#c62828"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")

# A cell is plain text, or (text, CSS class); both are escaped when the table is built.
Cell = str | tuple[str, str]

#: the unit of each metric the report shows (keys of the summary, the gates and the stress table)
UNITS: dict[str, str] = {
    "annual_return": "%", "max_drawdown": "%", "max_drawdown_bar_level": "%", "win_rate": "%",
    "stop_share": "%", "max_margin_use": "%", "expectancy_per_trade_of_capital": "%",
    "sharpe": "ratio", "sortino": "ratio", "calmar": "ratio", "non_inferiority": "ratio",
    "deflated_sharpe": "probability", "pbo": "probability", "theta1": "probability",
    "theta2": "probability", "expectancy_per_trade": "USD", "capital_usd": "USD",
    "final_equity_usd": "USD", "trades": "trades", "trades_per_year": "trades/year",
    "signals_while_halted": "signals", "days": "days", "years": "years",
    "periods_per_year": "days/year", "turnover_per_year": "× capital/year",
}  # fmt: skip


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return math.isnan(float(value))
    return False


def fmt(value: Any) -> str:
    """A value as table text: "—" for None/NaN, yes/no for booleans, 4 significant digits."""
    if is_missing(value):
        return DASH
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.4g}"
    return str(value)


def pct(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage: 0.0512 -> "5.12 %"."""
    if is_missing(value):
        return DASH
    return f"{float(value) * 100:,.{digits}f} %"


def usd(value: Any, digits: int = 2) -> str:
    """Money with thousands separators: -1234.5 -> "-1,234.50 USD"."""
    if is_missing(value):
        return DASH
    return f"{float(value):,.{digits}f} USD"


def with_unit(value: Any, unit: str) -> str:
    """``value`` written in ``unit`` (see UNITS): % and USD formatted, others suffixed."""
    if is_missing(value) or isinstance(value, bool | np.bool_):
        return fmt(value)
    if unit == "%":
        return pct(value)
    if unit == "USD":
        return usd(value)
    if unit in ("ratio", "probability", ""):
        return fmt(value)
    return f"{fmt(value)} {unit}"


def metric_cell(key: str, value: Any) -> Cell:
    """A metric's value in its unit (UNITS), right-aligned."""
    return (with_unit(value, UNITS.get(key, "")), "num")


def metric_label(key: str) -> str:
    """``key`` with its unit for ratios and probabilities, whose cells carry none."""
    unit = UNITS.get(key, "")
    return f"{key} ({unit})" if unit in ("ratio", "probability") else key


_THRESHOLD = re.compile(r"^\s*([<>]=?)\s*(-?[0-9.]+)\s*$")


def threshold_text(key: str, threshold: str) -> str:
    """A gate's threshold such as "< 0.15" written in the gate's unit ("< 15.00 %")."""
    m = _THRESHOLD.match(threshold)
    unit = UNITS.get(key, "")
    if m is None or unit in ("ratio", "probability", ""):
        return threshold
    return f"{m.group(1)} {with_unit(float(m.group(2)), unit)}"


def num(value: Any) -> Cell:
    return (fmt(value), "num")


def table(header: Sequence[str], rows: Iterable[Sequence[Cell]], cls: str = "") -> str:
    def cell(tag: str, c: Cell) -> str:
        text, klass = (c, "") if isinstance(c, str) else c
        attr = f' class="{html.escape(klass)}"' if klass else ""
        return f"<{tag}{attr}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>\n" for row in rows)
    attr = f' class="{html.escape(cls)}"' if cls else ""
    return f"<table{attr}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def no_data() -> str:
    return f'<p class="nodata">{NO_DATA}</p>'


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def section(key: str, heading: str, explain: str, body: str) -> str:
    return (
        f'<section id="{key}">\n<h2>{html.escape(heading)}</h2>\n'
        f'<p class="explain">{html.escape(explain)}</p>\n{body}\n</section>'
    )


def figure(fig: Any, div_id: str) -> str:
    fig.update_layout(template=TEMPLATE, margin={"l": 70, "r": 20, "t": 40, "b": 40})
    return str(
        pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config=PLOT_CONFIG,
            default_height=f"{int(fig.layout.height or 450)}px",
        )
    )


def naive_utc(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        return index.tz_convert("UTC").tz_localize(None)
    return index


def clean(series: pd.Series) -> pd.Series:
    s = pd.to_numeric(series, errors="coerce").dropna().sort_index()
    return s.set_axis(naive_utc(s.index))
