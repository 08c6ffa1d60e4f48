"""One self-contained HTML report of a backtest run, readable offline in a browser.

Sections, in order: the adoption decision with its gates, the model against the plain z-score
rule, the summary metrics, monthly returns, the per-pair breakdown, the equity of the portfolio
and of each pair (each on its own axis), the underwater curve, the trade distribution, the
trades, the θ search, the calibration curves with their bin counts, the feature importances,
the stress scenarios and the lineage. Every number says its unit (%, USD, bars, ...). Tables
are plain HTML (every text escaped); figures are plotly divs sharing one inlined copy of
plotly.js, so the page needs no network. Div ids are fixed and nothing depends on the clock,
so the same inputs give the same bytes. A section whose inputs are empty says "no data".
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from mlcore.backtest import _report_figures as figs
from mlcore.backtest import _report_tables as tabs
from mlcore.backtest._report_format import (
    DASH,
    NO_DATA,
    PALETTE,
    Cell,
    clean,
    fmt,
    is_missing,
    metric_cell,
    metric_label,
    no_data,
    note,
    section,
    table,
    threshold_text,
    with_unit,
)
from mlcore.data._atomic import write_atomic

__all__ = ["NO_DATA", "ReportInputs", "fmt", "render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1200px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:1.6rem;margin:0 0 4px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;
margin:16px 0;overflow-wrap:break-word}
h2{font-size:1.15rem;margin:0 0 2px}
p.explain{color:#57606a;margin:0 0 12px;font-size:.9rem}
p.nodata{color:#57606a;font-style:italic;margin:8px 0}
p.note{color:#57606a;margin:8px 0;font-size:.85rem}
.decision{font-size:2.6rem;font-weight:700;letter-spacing:.06em;margin:4px 0 6px}
.decision.adopt{color:#1a7f37}.decision.reject{color:#c62828}.decision.other{color:#9a6700}
.tally{color:#57606a;margin:0 0 12px}
table{border-collapse:collapse;font-size:.9rem;margin:4px 0;max-width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:5px 12px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.neg{color:#c62828}td.pos{color:#1a7f37}td.total{font-weight:600}
table.monthly{font-size:.8rem}table.monthly th,table.monthly td{padding:4px 6px}
table.trades{font-size:.82rem}table.trades th,table.trades td{padding:3px 8px}
td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
td.pass{color:#fff;background:#1a7f37;font-weight:600;text-align:center}
td.fail{color:#fff;background:#c62828;font-weight:600;text-align:center}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}
.grid>div{min-width:0}
div.scroll{max-height:640px;overflow-y:auto;border:1px solid #d0d7de;border-radius:6px}
div.scroll table{margin:0}div.scroll th{position:sticky;top:0}
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
    #: model -> mean_predicted, fraction_positive and (when stored) count per non-empty bin
    calibration: dict[str, dict[str, list[float]]]
    feature_importance: dict[str, dict[str, float]]
    stress: pd.DataFrame
    lineage: dict[str, str]
    #: the model's and the plain z-score rule's test metrics, side by side
    versus_zscore: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    #: one line per window without a trade, saying which gate no bar passed
    no_trades: list[str] = field(default_factory=list)
    #: the account's daily returns (the first day against the capital), on daily_equity's days
    daily_returns: pd.Series | None = None


def _decision_section(inputs: ReportInputs) -> str:
    decision = inputs.decision.strip()
    kind = decision.lower() if decision.lower() in ("adopt", "reject") else "other"
    passed = sum(1 for g in inputs.gates if g.get("passed") is True)
    parts = [f'<p class="decision {kind}">{html.escape(decision.upper() or DASH)}</p>']
    if inputs.gates:
        parts.append(f'<p class="tally">{passed} of {len(inputs.gates)} gates passed</p>')
        rows: list[list[Cell]] = []
        for g in inputs.gates:
            ok, name = g.get("passed"), str(g.get("gate", ""))
            verdict: Cell = (
                ("PASS", "pass") if ok is True else ("FAIL", "fail") if ok is False else DASH
            )
            rows.append([metric_label(name), metric_cell(name, g.get("value")),
                         threshold_text(name, str(g.get("threshold", ""))), verdict,
                         str(g.get("reason", ""))])  # fmt: skip
        parts.append(table(["gate", "value", "threshold", "result", "reason"], rows))
    else:
        parts.append(no_data())
    return section(
        "decision", "1. Adoption decision",
        "Whether this model and θ replace the current ones: adopted only if every gate passes.",
        "\n".join(parts),
    )  # fmt: skip


def _versus_section(inputs: ReportInputs) -> str:
    rows = [[metric_label(k), metric_cell(k, m), metric_cell(k, z)]
            for k, (m, z) in inputs.versus_zscore.items()]  # fmt: skip
    body = table(["metric", "model (AI gates at θ)", "z-score rule (no AI gates)"], rows)
    body = body if rows else no_data()
    body += "".join(note(line) for line in inputs.no_trades)
    return section(
        "versus", "2. The model against the plain z-score rule",
        "The same test window, engine, costs, sizing and stops with every AI gate open: what "
        "the models add to the z-score rule.", body,
    )  # fmt: skip


def _summary_section(inputs: ReportInputs) -> str:
    rows = [[metric_label(k), metric_cell(k, v)] for k, v in inputs.summary.items()]
    return section(
        "summary", "3. Summary metrics",
        "Headline performance with the chosen θ over the whole test window; returns and "
        "drawdowns in %, money in USD.",
        table(["metric", "value"], rows) if rows else no_data(),
    )  # fmt: skip


def _returns(inputs: ReportInputs) -> pd.Series:
    if inputs.daily_returns is not None and len(inputs.daily_returns):
        return clean(inputs.daily_returns)
    return clean(inputs.daily_equity).pct_change().dropna()


def _monthly_section(inputs: ReportInputs) -> str:
    monthly = tabs.monthly_returns(_returns(inputs))
    return section(
        "monthly", "4. Monthly returns",
        "Compounded daily returns of the account per calendar month (UTC), in %; the last "
        "column compounds the year's months shown. Blank months had no trading day.",
        tabs.monthly_table(monthly) if not monthly.empty else no_data(),
    )  # fmt: skip


def _pairs_section(inputs: ReportInputs) -> str:
    breakdown = tabs.pair_breakdown(inputs.trades, inputs.pair_equity)
    return section(
        "pairs", "5. Per-pair breakdown",
        "Each pair's trades on the test window: P&L after costs and carry (USD), return on the "
        "pair's capital and the max drawdown of its daily equity (%), average holding (bars).",
        tabs.pairs_table(breakdown) if not breakdown.empty else no_data(),
    )  # fmt: skip


def _equity_section(inputs: ReportInputs) -> str:
    portfolio = clean(inputs.daily_equity)
    pairs = {str(k): clean(v) for k, v in sorted(inputs.pair_equity.items())}
    pairs = {k: v for k, v in pairs.items() if not v.empty}
    explain = ("Daily equity (USD) of the portfolio and of each pair, each on its own vertical "
               "axis so a pair's moves are not flattened by the portfolio's scale.")  # fmt: skip
    if portfolio.empty and not pairs:
        return section("equity", "6. Equity", explain, no_data())
    return section("equity", "6. Equity", explain, figs.equity_figure(portfolio, pairs))


def _drawdown_section(inputs: ReportInputs) -> str:
    portfolio = clean(inputs.daily_equity)
    explain = "The account's fall from its running peak, in % (the peak starts at the capital)."
    if portfolio.empty:
        return section("drawdown", "7. Drawdown (underwater)", explain, no_data())
    returns = _returns(inputs) if inputs.daily_returns is not None else None
    returns = returns.reindex(portfolio.index) if returns is not None else None
    if returns is not None and returns.isna().any():
        returns = None
    dd = figs.underwater(portfolio, returns)
    body = figs.drawdown_figure(dd) + note(f"deepest: {dd.min():.2f} % on "
                                           f"{dd.idxmin():%Y-%m-%d}")  # fmt: skip
    return section("drawdown", "7. Drawdown (underwater)", explain, body)


def _trades_section(inputs: ReportInputs) -> str:
    trades = inputs.trades
    explain = "Profit and loss per closed trade (USD), and how many trades closed for each reason."
    has = trades.columns
    pnl = pd.to_numeric(trades["pnl_usd"], errors="coerce").dropna() if "pnl_usd" in has else None
    if pnl is None or pnl.empty:
        return section("distribution", "8. Trade distribution", explain, no_data())
    reasons = trades["exit_reason"] if "exit_reason" in has else None
    return section("distribution", "8. Trade distribution", explain,
                   figs.trades_figure(pnl, reasons))  # fmt: skip


def _trade_list_section(inputs: ReportInputs) -> str:
    explain = ("The test window's trades by entry time: side, holding (bars), P&L after "
               "costs and carry (USD), costs (USD) and why it closed.")  # fmt: skip
    if inputs.trades.empty:
        return section("trades", "9. Trades", explain, no_data())
    listing = tabs.trades_listing(inputs.trades)
    body = f'<div class="scroll">{tabs.trades_table(listing)}</div>'
    if len(inputs.trades) > len(listing):
        body = note(f"The first {len(listing):,} of {len(inputs.trades):,} trades; all of them "
                    "are in bt_trades.parquet.") + body  # fmt: skip
    return section("trades", "9. Trades", explain, body)


def _theta_section(inputs: ReportInputs) -> str:
    explain = ("Search objective for each (θ1, θ2) tried; the chosen θ is starred, the previous "
               "one circled.")  # fmt: skip
    grid = inputs.theta_grid
    if grid.empty or not {"theta1", "theta2", "objective"} <= set(grid.columns):
        return section("theta", "10. θ search", explain, no_data())
    grid = grid[["theta1", "theta2", "objective"]].apply(pd.to_numeric, errors="coerce")
    grid = grid.dropna(subset=["theta1", "theta2"])
    if grid.empty:
        return section("theta", "10. θ search", explain, no_data())
    body = figs.theta_figure(grid, inputs.theta_chosen, inputs.theta_previous)
    return section("theta", "10. θ search", explain, body)


def _calibration_section(inputs: ReportInputs) -> str:
    explain = ("Observed share of positives against the mean predicted probability (%) in each "
               "of the equal-width bins with samples, on the out-of-sample calibrated "
               "predictions; below, how many samples each bin holds.")  # fmt: skip
    curves = {str(k): c for k, c in sorted(inputs.calibration.items())
              if c.get("mean_predicted") and c.get("fraction_positive")}  # fmt: skip
    if not curves:
        return section("calibration", "11. Calibration", explain, no_data())
    blocks = []
    for name, c in curves.items():
        stored: list[Any] = list(c.get("count") or [])
        counts = stored or [None] * len(c["mean_predicted"])
        rows: list[list[Cell]] = [
            [(with_unit(p, "%"), "num"), (with_unit(t, "%"), "num"),
             (DASH if is_missing(n) else f"{int(n):,} samples", "num")]
            for p, t, n in zip(c["mean_predicted"], c["fraction_positive"], counts, strict=False)
        ]  # fmt: skip
        block = f"<div><h3>{html.escape(name)}</h3>" + table(
            ["mean predicted (%)", "observed positives (%)", "bin size (samples)"], rows
        )
        if not stored:
            block += note(
                f"{name}: this model version's metrics.json stores no bin counts "
                "(trained before they were recorded); the curve is shown without them."
            )
        blocks.append(block + "</div>")
    body = figs.calibration_figure(curves) + '<div class="grid">' + "".join(blocks) + "</div>"
    return section("calibration", "11. Calibration", explain, body)


def _importance_section(inputs: ReportInputs) -> str:
    explain = (f"Share of total split gain per feature (%), top {figs.TOP_FEATURES} for each "
               "model (larger means the model leans on it more).")  # fmt: skip
    blocks: list[str] = []
    for i, (name, imp) in enumerate(sorted(inputs.feature_importance.items())):
        values = pd.to_numeric(pd.Series(imp, dtype=object), errors="coerce").dropna()
        if values.empty:
            continue
        values.index = values.index.astype(str)
        top = values.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        top = top.head(figs.TOP_FEATURES)[::-1]  # largest at the top of a horizontal bar chart
        fig = figs.importance_figure(top, PALETTE[i % len(PALETTE)], f"fig-importance-{i}")
        blocks.append(f"<div><h3>{html.escape(str(name))}</h3>\n{fig}</div>")
    body = '<div class="grid">\n' + "\n".join(blocks) + "\n</div>" if blocks else no_data()
    return section("importance", "12. Feature importance", explain, body)


def _stress_section(inputs: ReportInputs) -> str:
    stress = inputs.stress
    rows: list[list[Cell]] = []
    for r in stress.to_dict("records"):
        cells: list[Cell] = [str(r.get("scenario", "")), str(r.get("description", ""))]
        rows.append(cells + [metric_cell(k, r.get(k)) for k in _STRESS_METRICS])
    header = ["scenario", "what changes", "annual return (%)", "Sharpe (ratio)",
              "max drawdown (%)", "trades/year", "trades"]  # fmt: skip
    return section(
        "stress", "13. Stress scenarios",
        "The chosen θ re-run under harsher costs and market conditions.",
        table(header, rows) if rows else no_data(),
    )  # fmt: skip


_STRESS_METRICS = ("annual_return", "sharpe", "max_drawdown", "trades_per_year", "trades")


def _lineage_section(inputs: ReportInputs) -> str:
    rows: list[list[Cell]] = [[str(k), (str(v), "mono")] for k, v in inputs.lineage.items()]
    return section(
        "lineage", "14. Lineage",
        "What produced this run: model, features, code, data and seed, to reproduce it.",
        table(["item", "value"], rows) if rows else no_data(),
    )  # fmt: skip


_SECTIONS = (
    _decision_section, _versus_section, _summary_section, _monthly_section, _pairs_section,
    _equity_section, _drawdown_section, _trades_section, _trade_list_section, _theta_section,
    _calibration_section, _importance_section, _stress_section, _lineage_section,
)  # fmt: skip


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
