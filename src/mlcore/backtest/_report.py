"""One self-contained HTML report of a backtest run, readable offline in a browser.

Sections, in order: the adoption decision with its gates, the summary metrics, the equity
curves with the portfolio drawdown, the trade distribution, the θ heat-map, the calibration
curves, the feature importances, the stress scenarios and the lineage. Tables are plain HTML
(every text escaped); figures are plotly divs sharing one inlined copy of plotly.js, so the page
needs no network. Div ids are fixed, so the same inputs give the same bytes. A section whose
inputs are empty says "no data" instead of drawing a figure.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go  # type: ignore[import-untyped]
import plotly.io as pio  # type: ignore[import-untyped]
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from mlcore.data._atomic import write_atomic

NO_DATA = "no data"
TOP_FEATURES = 20
_TEMPLATE = "plotly_white"
_PLOT_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
_PASS, _FAIL = "#1a7f37", "#c62828"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_DASH = "—"

# A cell is plain text, or (text, CSS class); both are escaped when the table is built.
Cell = str | tuple[str, str]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1200px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:1.6rem;margin:0 0 4px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;
margin:16px 0}
h2{font-size:1.15rem;margin:0 0 2px}
p.explain{color:#57606a;margin:0 0 12px;font-size:.9rem}
p.nodata{color:#57606a;font-style:italic;margin:8px 0}
.decision{font-size:2.6rem;font-weight:700;letter-spacing:.06em;margin:4px 0 6px}
.decision.adopt{color:#1a7f37}.decision.reject{color:#c62828}.decision.other{color:#9a6700}
.tally{color:#57606a;margin:0 0 12px}
table{border-collapse:collapse;font-size:.9rem;margin:4px 0}
th,td{border-bottom:1px solid #d0d7de;padding:5px 12px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
td.pass{color:#fff;background:#1a7f37;font-weight:600;text-align:center}
td.fail{color:#fff;background:#c62828;font-weight:600;text-align:center}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}
.grid>div{min-width:0}
h3{font-size:.95rem;margin:8px 0 0}
"""


@dataclass
class ReportInputs:
    """Everything the report shows; any part may be empty."""

    title: str
    decision: str
    gates: list[dict[str, Any]]
    summary: dict[str, float]
    daily_equity: pd.Series
    pair_equity: dict[str, pd.Series]
    trades: pd.DataFrame
    theta_grid: pd.DataFrame
    theta_chosen: tuple[float, float]
    theta_previous: tuple[float, float] | None
    calibration: dict[str, dict[str, list[float]]]
    feature_importance: dict[str, dict[str, float]]
    stress: pd.DataFrame
    lineage: dict[str, str]
    #: the model's and the plain z-score rule's test metrics, side by side
    versus_zscore: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    #: one line per window without a trade, saying which gate no bar passed
    no_trades: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- formatting and tables


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return math.isnan(float(value))
    return False


def fmt(value: Any) -> str:
    """A value as table text: "—" for None/NaN, yes/no for booleans, 4 significant digits."""
    if _is_missing(value):
        return _DASH
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


def _num(value: Any) -> Cell:
    return (fmt(value), "num")


def _table(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    def cell(tag: str, c: Cell) -> str:
        text, cls = (c, "") if isinstance(c, str) else c
        attr = f' class="{html.escape(cls)}"' if cls else ""
        return f"<{tag}{attr}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _no_data() -> str:
    return f'<p class="nodata">{NO_DATA}</p>'


def _section(key: str, heading: str, explain: str, body: str) -> str:
    return (
        f'<section id="{key}">\n<h2>{html.escape(heading)}</h2>\n'
        f'<p class="explain">{html.escape(explain)}</p>\n{body}\n</section>'
    )


def _figure(fig: Any, div_id: str) -> str:
    fig.update_layout(template=_TEMPLATE, margin={"l": 60, "r": 20, "t": 40, "b": 40})
    return str(
        pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config=_PLOT_CONFIG,
            default_height=f"{int(fig.layout.height or 450)}px",
        )
    )


def _frame_rows(frame: pd.DataFrame) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for record in frame.itertuples(index=False, name=None):
        rows.append(
            [_num(v) if isinstance(v, numbers.Real) or _is_missing(v) else str(v) for v in record]
        )
    return rows


def _naive_utc(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        return index.tz_convert("UTC").tz_localize(None)
    return index


def _clean(series: pd.Series) -> pd.Series:
    s = pd.to_numeric(series, errors="coerce").dropna().sort_index()
    return s.set_axis(_naive_utc(s.index))


# ---------------------------------------------------------------- the sections


def _decision_section(inputs: ReportInputs) -> str:
    decision = inputs.decision.strip()
    kind = decision.lower() if decision.lower() in ("adopt", "reject") else "other"
    passed = sum(1 for g in inputs.gates if g.get("passed") is True)
    parts = [f'<p class="decision {kind}">{html.escape(decision.upper() or _DASH)}</p>']
    if inputs.gates:
        parts.append(f'<p class="tally">{passed} of {len(inputs.gates)} gates passed</p>')
        rows: list[list[Cell]] = []
        for g in inputs.gates:
            ok = g.get("passed")
            verdict: Cell = (
                ("PASS", "pass") if ok is True else ("FAIL", "fail") if ok is False else _DASH
            )
            rows.append(
                [
                    str(g.get("gate", "")),
                    _num(g.get("value")),
                    str(g.get("threshold", "")),
                    verdict,
                    str(g.get("reason", "")),
                ]
            )
        parts.append(_table(["gate", "value", "threshold", "result", "reason"], rows))
    else:
        parts.append(_no_data())
    return _section(
        "decision",
        "1. Adoption decision",
        "Whether this model and θ replace the current ones: adopted only if every gate passes.",
        "\n".join(parts),
    )


def _summary_section(inputs: ReportInputs) -> str:
    body = (
        _table(["metric", "value"], [[str(k), _num(v)] for k, v in inputs.summary.items()])
        if inputs.summary
        else _no_data()
    )
    if inputs.versus_zscore:
        rows = [[k, _num(m), _num(z)] for k, (m, z) in inputs.versus_zscore.items()]
        body += "<h3>The model against the plain z-score rule (no AI gates)</h3>"
        body += _table(["metric", "model", "z-score rule"], rows)
    for line in inputs.no_trades:
        body += f"<p class='note'>{html.escape(line)}</p>"
    return _section(
        "summary",
        "2. Summary metrics",
        "Headline performance of the backtest with the chosen θ, over the whole test period.",
        body,
    )


def _equity_section(inputs: ReportInputs) -> str:
    portfolio = _clean(inputs.daily_equity)
    pairs = {str(k): _clean(v) for k, v in sorted(inputs.pair_equity.items())}
    pairs = {k: v for k, v in pairs.items() if not v.empty}
    explain = (
        "Daily equity in USD of the portfolio and of each pair; below, the portfolio's fall "
        "from its running peak (underwater curve, %)."
    )
    if portfolio.empty and not pairs:
        return _section("equity", "3. Equity and drawdown", explain, _no_data())
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04
    )
    if not portfolio.empty:
        fig.add_trace(
            go.Scatter(
                x=portfolio.index, y=portfolio.to_numpy(), name="portfolio", mode="lines",
                line={"color": "#111111", "width": 2.5},
            ),
            row=1, col=1,
        )  # fmt: skip
    for i, (pair, series) in enumerate(pairs.items()):
        fig.add_trace(
            go.Scatter(
                x=series.index, y=series.to_numpy(), name=pair, mode="lines",
                line={"color": _PALETTE[i % len(_PALETTE)], "width": 1.2}, opacity=0.85,
            ),
            row=1, col=1,
        )  # fmt: skip
    source = (
        portfolio
        if not portfolio.empty
        else pd.concat(list(pairs.values()), axis=1).sort_index().ffill().sum(axis=1)
    )
    drawdown = (source / source.cummax() - 1.0) * 100.0
    fig.add_trace(
        go.Scatter(
            x=drawdown.index, y=drawdown.to_numpy(), name="drawdown %", mode="lines",
            fill="tozeroy", line={"color": _FAIL, "width": 1}, showlegend=False,
        ),
        row=2, col=1,
    )  # fmt: skip
    fig.update_yaxes(title_text="equity (USD)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown (%)", row=2, col=1)
    fig.update_layout(height=560, hovermode="x unified", legend={"orientation": "h", "y": 1.08})
    return _section("equity", "3. Equity and drawdown", explain, _figure(fig, "fig-equity"))


def _trades_section(inputs: ReportInputs) -> str:
    trades = inputs.trades
    explain = "Profit and loss per closed trade (USD), and how many trades closed for each reason."
    pnl = (
        pd.to_numeric(trades["pnl_usd"], errors="coerce").dropna()
        if "pnl_usd" in trades.columns
        else pd.Series(dtype=np.float64)
    )
    if trades.empty or pnl.empty:
        return _section("trades", "4. Trade distribution", explain, _no_data())
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.1,
        subplot_titles=(f"P&L per trade (n = {len(pnl):,})", "trades by exit reason"),
    )  # fmt: skip
    fig.add_trace(
        go.Histogram(x=pnl.to_numpy(), nbinsx=50, marker={"color": "#1f77b4"}, name="P&L"),
        row=1, col=1,
    )  # fmt: skip
    fig.add_vline(x=0, line={"color": "#57606a", "dash": "dot"}, row=1, col=1)
    if "exit_reason" in trades.columns:
        counts = trades["exit_reason"].fillna("(none)").astype(str).value_counts()
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        fig.add_trace(
            go.Bar(
                x=counts.index.tolist(), y=counts.to_numpy(), marker={"color": "#ff7f0e"},
                name="exit reason", text=counts.to_numpy(), textposition="outside",
            ),
            row=1, col=2,
        )  # fmt: skip
    fig.update_xaxes(title_text="P&L (USD)", row=1, col=1)
    fig.update_yaxes(title_text="trades", row=1, col=1)
    fig.update_layout(height=400, showlegend=False, bargap=0.05)
    return _section("trades", "4. Trade distribution", explain, _figure(fig, "fig-trades"))


def _theta_marker(fig: Any, theta: tuple[float, float], name: str, symbol: str) -> None:
    fill = "#111111" if symbol.endswith("-open") else "#ffffff"  # open symbols draw in `color`
    fig.add_trace(
        go.Scatter(
            x=[theta[0]], y=[theta[1]], mode="markers+text", name=name, text=[name],
            textposition="top center", textfont={"color": "#111111", "size": 13},
            marker={"symbol": symbol, "size": 16, "color": fill,
                    "line": {"color": "#111111", "width": 2}},
        )
    )  # fmt: skip


def _theta_section(inputs: ReportInputs) -> str:
    explain = (
        "Search objective for each (θ1, θ2) tried; the chosen θ is starred, the previous "
        "one circled."
    )
    grid = inputs.theta_grid
    needed = {"theta1", "theta2", "objective"}
    if grid.empty or not needed <= set(grid.columns):
        return _section("theta", "5. θ search", explain, _no_data())
    grid = grid[["theta1", "theta2", "objective"]].apply(pd.to_numeric, errors="coerce")
    grid = grid.dropna(subset=["theta1", "theta2"])
    if grid.empty:
        return _section("theta", "5. θ search", explain, _no_data())
    table = grid.pivot_table(index="theta2", columns="theta1", values="objective", aggfunc="mean")
    hover = "θ1=%{x:.4g}<br>θ2=%{y:.4g}<br>objective=%{z:.4g}<extra></extra>"
    fig = go.Figure()
    if table.notna().to_numpy().mean() >= 0.5:  # a lattice: a heat-map
        fig.add_trace(
            go.Heatmap(
                x=table.columns.to_numpy(), y=table.index.to_numpy(), z=table.to_numpy(),
                colorscale="Viridis", colorbar={"title": {"text": "objective"}},
                hovertemplate=hover, hoverongaps=False,
            )
        )  # fmt: skip
    else:  # scattered trials (random or Bayesian search): coloured points
        fig.add_trace(
            go.Scatter(
                x=grid["theta1"].to_numpy(), y=grid["theta2"].to_numpy(), mode="markers",
                name="trials", showlegend=False,
                marker={"color": grid["objective"].to_numpy(), "colorscale": "Viridis",
                        "size": 9, "colorbar": {"title": {"text": "objective"}}},
                hovertemplate=hover.replace("%{z:.4g}", "%{marker.color:.4g}"),
            )
        )  # fmt: skip
    if inputs.theta_previous is not None:
        _theta_marker(fig, inputs.theta_previous, "previous", "circle-open")
    _theta_marker(fig, inputs.theta_chosen, "chosen", "star")
    fig.update_xaxes(title_text="θ1")
    fig.update_yaxes(title_text="θ2")
    fig.update_layout(height=480, showlegend=False)
    return _section("theta", "5. θ search", explain, _figure(fig, "fig-theta"))


def _calibration_section(inputs: ReportInputs) -> str:
    explain = (
        "Observed share of positives against the predicted probability, per model; a "
        "well-calibrated model follows the dashed diagonal."
    )
    curves = {
        str(name): (list(c.get("mean_predicted", [])), list(c.get("fraction_positive", [])))
        for name, c in sorted(inputs.calibration.items())
    }
    curves = {k: v for k, v in curves.items() if v[0] and v[1]}
    if not curves:
        return _section("calibration", "6. Calibration", explain, _no_data())
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect",
            line={"color": "#8c959f", "dash": "dash"},
        )
    )  # fmt: skip
    for i, (name, (x, y)) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(
                x=x, y=y, mode="lines+markers", name=name,
                line={"color": _PALETTE[i % len(_PALETTE)]},
            )
        )  # fmt: skip
    fig.update_xaxes(title_text="mean predicted probability", range=[0, 1])
    fig.update_yaxes(title_text="fraction positive", range=[0, 1])
    fig.update_layout(height=480, width=540, legend={"x": 0.02, "y": 0.98})
    return _section("calibration", "6. Calibration", explain, _figure(fig, "fig-calibration"))


def _importance_section(inputs: ReportInputs) -> str:
    explain = (
        f"Share of total split gain per feature, top {TOP_FEATURES} for each model (larger "
        "means the model leans on it more)."
    )
    blocks: list[str] = []
    for i, (name, imp) in enumerate(sorted(inputs.feature_importance.items())):
        values = pd.to_numeric(pd.Series(imp, dtype=object), errors="coerce").dropna()
        if values.empty:
            continue
        values.index = values.index.astype(str)
        top = values.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        top = top.head(TOP_FEATURES)[::-1]  # largest at the top of a horizontal bar chart
        fig = go.Figure(
            go.Bar(
                x=top.to_numpy(), y=top.index.tolist(), orientation="h",
                marker={"color": _PALETTE[i % len(_PALETTE)]},
                hovertemplate="%{y}: %{x:.4g}<extra></extra>",
            )
        )  # fmt: skip
        fig.update_xaxes(title_text="gain share")
        fig.update_yaxes(automargin=True)
        fig.update_layout(height=140 + 22 * len(top), margin={"l": 10})
        blocks.append(
            f"<div><h3>{html.escape(str(name))}</h3>\n{_figure(fig, f'fig-importance-{i}')}</div>"
        )
    body = '<div class="grid">\n' + "\n".join(blocks) + "\n</div>" if blocks else _no_data()
    return _section("importance", "7. Feature importance", explain, body)


def _stress_section(inputs: ReportInputs) -> str:
    stress = inputs.stress
    body = (
        _table([str(c) for c in stress.columns], _frame_rows(stress))
        if not stress.empty and len(stress.columns)
        else _no_data()
    )
    return _section(
        "stress",
        "8. Stress scenarios",
        "The chosen θ re-run under harsher costs and market conditions.",
        body,
    )


def _lineage_section(inputs: ReportInputs) -> str:
    body = (
        _table(["item", "value"], [[str(k), (str(v), "mono")] for k, v in inputs.lineage.items()])
        if inputs.lineage
        else _no_data()
    )
    return _section(
        "lineage",
        "9. Lineage",
        "What produced this run: model, features, code, data and seed, to reproduce it.",
        body,
    )


_SECTIONS = (
    _decision_section,
    _summary_section,
    _equity_section,
    _trades_section,
    _theta_section,
    _calibration_section,
    _importance_section,
    _stress_section,
    _lineage_section,
)


def render_report(inputs: ReportInputs) -> str:
    """The report as one self-contained HTML document (plotly.js inlined once, if any figure)."""
    sections = [build(inputs) for build in _SECTIONS]
    has_figure = any('class="plotly-graph-div"' in s for s in sections)
    script = f'<script type="text/javascript">{get_plotlyjs()}</script>\n' if has_figure else ""
    title = html.escape(inputs.title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n{script}</head>\n<body>\n<main>\n"
        f"<h1>{title}</h1>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )


def write_report(path: Path, inputs: ReportInputs) -> Path:
    """Render the report and write it atomically to ``path`` (temp file + rename)."""
    write_atomic(path, render_report(inputs).encode("utf-8"))
    return path
