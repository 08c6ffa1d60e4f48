"""The report's plotly figures: each pair's and the portfolio's equity on its own axis, the
underwater curve, the trade distribution, the θ search, calibration with bin counts and feature
importance. Every axis says its unit; div ids are fixed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from mlcore.backtest._report_format import FAIL, PALETTE, figure

TOP_FEATURES = 20
_ROW_PX = 210


def equity_figure(portfolio: pd.Series, pairs: dict[str, pd.Series]) -> str:
    """The portfolio and each pair in its own panel (own y axis, USD), sharing the time axis."""
    panels = ([("portfolio", portfolio)] if not portfolio.empty else []) + list(pairs.items())
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.35 / len(panels) / 2,
        subplot_titles=[f"{name} — equity (USD)" for name, _ in panels],
    )  # fmt: skip
    for i, (name, series) in enumerate(panels, start=1):
        colour = "#111111" if name == "portfolio" and not portfolio.empty else PALETTE[i % 7]
        fig.add_trace(
            go.Scatter(
                x=series.index, y=series.to_numpy(), name=name, mode="lines",
                line={"color": colour, "width": 1.8},
                hovertemplate="%{x|%Y-%m-%d}: %{y:,.2f} USD<extra>" + name + "</extra>",
            ),
            row=i, col=1,
        )  # fmt: skip
        fig.update_yaxes(title_text="USD", tickformat=",.0f", row=i, col=1)
    fig.update_xaxes(title_text="date (UTC)", row=len(panels), col=1)
    fig.update_layout(height=80 + _ROW_PX * len(panels), showlegend=False)
    return figure(fig, "fig-equity")


def underwater(equity: pd.Series, returns: pd.Series | None) -> pd.Series:
    """The fall from the running peak (%, ≤ 0); from daily returns when given, so the peak
    starts at the starting capital."""
    if returns is not None and len(returns) == len(equity):
        growth = np.cumprod(1.0 + returns.to_numpy(dtype=np.float64))
        peak = np.maximum.accumulate(np.r_[1.0, growth])[1:]
        return pd.Series((growth / peak - 1.0) * 100.0, index=equity.index)
    return (equity / equity.cummax() - 1.0) * 100.0


def drawdown_figure(drawdown: pd.Series) -> str:
    fig = go.Figure(
        go.Scatter(
            x=drawdown.index, y=drawdown.to_numpy(), mode="lines", fill="tozeroy",
            line={"color": FAIL, "width": 1}, name="drawdown",
            hovertemplate="%{x|%Y-%m-%d}: %{y:.2f} %<extra></extra>",
        )
    )  # fmt: skip
    fig.update_yaxes(title_text="drawdown (%)", ticksuffix=" %", tickformat=".1f")
    fig.update_xaxes(title_text="date (UTC)")
    fig.update_layout(height=300, showlegend=False)
    return figure(fig, "fig-drawdown")


def trades_figure(pnl: pd.Series, reasons: pd.Series | None) -> str:
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.1,
        subplot_titles=(f"P&L per trade (n = {len(pnl):,})", "trades by exit reason"),
    )  # fmt: skip
    fig.add_trace(
        go.Histogram(x=pnl.to_numpy(), nbinsx=50, marker={"color": "#1f77b4"}, name="P&L"),
        row=1, col=1,
    )  # fmt: skip
    fig.add_vline(x=0, line={"color": "#57606a", "dash": "dot"}, row=1, col=1)
    if reasons is not None:
        counts = reasons.fillna("(none)").astype(str).value_counts()
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        fig.add_trace(
            go.Bar(
                x=counts.index.tolist(), y=counts.to_numpy(), marker={"color": "#ff7f0e"},
                name="exit reason", text=counts.to_numpy(), textposition="outside",
            ),
            row=1, col=2,
        )  # fmt: skip
        fig.update_yaxes(title_text="trades (count)", row=1, col=2)
    fig.update_xaxes(title_text="P&L per trade (USD)", tickformat=",.0f", row=1, col=1)
    fig.update_yaxes(title_text="trades (count)", row=1, col=1)
    fig.update_layout(height=400, showlegend=False, bargap=0.05)
    return figure(fig, "fig-trades")


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


def theta_figure(
    grid: pd.DataFrame, chosen: tuple[float, float], previous: tuple[float, float] | None
) -> str:
    table = grid.pivot_table(index="theta2", columns="theta1", values="objective", aggfunc="mean")
    hover = "θ1=%{x:.4g}<br>θ2=%{y:.4g}<br>objective=%{z:.4g}<extra></extra>"
    bar = {"title": {"text": "objective (ratio)"}}
    fig = go.Figure()
    if table.notna().to_numpy().mean() >= 0.5:  # a lattice: a heat-map
        fig.add_trace(
            go.Heatmap(
                x=table.columns.to_numpy(), y=table.index.to_numpy(), z=table.to_numpy(),
                colorscale="Viridis", colorbar=bar, hovertemplate=hover, hoverongaps=False,
            )
        )  # fmt: skip
    else:  # scattered trials (random or Bayesian search): coloured points
        fig.add_trace(
            go.Scatter(
                x=grid["theta1"].to_numpy(), y=grid["theta2"].to_numpy(), mode="markers",
                name="trials", showlegend=False,
                marker={"color": grid["objective"].to_numpy(), "colorscale": "Viridis",
                        "size": 9, "colorbar": bar},
                hovertemplate=hover.replace("%{z:.4g}", "%{marker.color:.4g}"),
            )
        )  # fmt: skip
    if previous is not None:
        _theta_marker(fig, previous, "previous", "circle-open")
    _theta_marker(fig, chosen, "chosen", "star")
    fig.update_xaxes(title_text="θ1 (AI1 probability threshold)")
    fig.update_yaxes(title_text="θ2 (AI2 risk threshold)")
    fig.update_layout(height=480, showlegend=False)
    return figure(fig, "fig-theta")


def calibration_figure(curves: dict[str, dict[str, list[float]]]) -> str:
    """Curves (predicted vs observed, %) above, each bin's sample count below."""
    with_counts = any(c.get("count") for c in curves.values())
    fig = make_subplots(
        rows=2 if with_counts else 1, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        row_heights=[0.7, 0.3] if with_counts else None,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[0, 100], y=[0, 100], mode="lines", name="perfect",
            line={"color": "#8c959f", "dash": "dash"},
        ),
        row=1, col=1,
    )  # fmt: skip
    for i, (name, c) in enumerate(curves.items()):
        x = [v * 100 for v in c["mean_predicted"]]
        colour = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=x, y=[v * 100 for v in c["fraction_positive"]], mode="lines+markers",
                name=name, line={"color": colour}, legendgroup=name,
            ),
            row=1, col=1,
        )  # fmt: skip
        if c.get("count"):
            fig.add_trace(
                go.Bar(x=x, y=c["count"], name=f"{name} samples", marker={"color": colour},
                       legendgroup=name, showlegend=False, opacity=0.8),
                row=2, col=1,
            )  # fmt: skip
    fig.update_yaxes(title_text="observed positives (%)", range=[0, 100], row=1, col=1)
    last = 2 if with_counts else 1
    if with_counts:
        fig.update_yaxes(title_text="samples (count)", row=2, col=1)
    fig.update_xaxes(title_text="mean predicted probability (%)", range=[0, 100], row=last, col=1)
    fig.update_layout(height=620 if with_counts else 480, legend={"x": 0.02, "y": 0.98},
                      barmode="group")  # fmt: skip
    return figure(fig, "fig-calibration")


def importance_figure(top: pd.Series, colour: str, div_id: str) -> str:
    fig = go.Figure(
        go.Bar(
            x=(top * 100).to_numpy(), y=top.index.tolist(), orientation="h",
            marker={"color": colour}, hovertemplate="%{y}: %{x:.2f} %<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(title_text="share of split gain (%)")
    fig.update_yaxes(automargin=True)
    fig.update_layout(height=140 + 22 * len(top), margin={"l": 10})
    return figure(fig, div_id)
