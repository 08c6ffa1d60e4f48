"""Everything the command line prints: the consoles, error lines, stage progress lines and
the summary tables of each stage's report. Reports are read, never computed, here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mlcore._progress import Sink

if TYPE_CHECKING:
    from mlcore.backtest import BacktestReport, ThetaRun
    from mlcore.data import IngestReport
    from mlcore.demo import DemoResult
    from mlcore.feedback import LiveKpis, LoopSummary
    from mlcore.flows import RetrainOutcome
    from mlcore.registry import ModelRecord
    from mlcore.training import TrainReport

# C0 controls but tab and newline, DEL and the C1 controls: shown as \xNN, never sent raw.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))}


def plain(value: str) -> str:
    """``value`` with its control characters (ESC, BEL, CR ...) written as ``\\xNN``: a note, a
    file's content or a message can never move the cursor, clear or retitle the terminal."""
    return value.translate(_CONTROLS)


class _SafeConsole(Console):
    """A console that shows every string it renders (plain text, markup, table cells) through
    :func:`plain`; the styles rich adds itself are unaffected."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(plain(text), **kwargs)


# Wide enough for the summary tables when output is piped (rich assumes 80 columns).
out = _SafeConsole(width=None if sys.stdout.isatty() else 120)
RECORD_TABLE_MIN_WIDTH = 110  # the registry's 9 columns fit, none of them cut
err = _SafeConsole(stderr=True, width=None if sys.stderr.isatty() else 160)


def error_line(label: str, message: str) -> None:
    """One line on stderr: ``label`` in bold red, then ``message`` as plain text (never
    markup: it may hold user-supplied strings)."""
    line = Text(label, style="bold red")
    if message:
        message = plain(message)
        line.append(f": {message}" if label.startswith("error ") else f" {message}")
    err.print(line, highlight=False, soft_wrap=True)


def text(value: str) -> None:
    """Print ``value`` as plain text: no markup, no highlighting."""
    out.print(value, markup=False, highlight=False, soft_wrap=True)


def progress_sink() -> Sink:
    """Where stage lines go: stdout, one line each, flushed (a log shows them as they come)."""

    def sink(line: str) -> None:
        out.print(line, markup=False, highlight=False, soft_wrap=True, style="dim")
        out.file.flush()

    return sink


def version_column(table: Table, header: str = "version") -> None:
    """A column of model version ids: never cut, never wrapped (it is copied into commands)."""
    table.add_column(header, no_wrap=True, overflow="fold", min_width=len("20250101_0000_abc1234"))


def _print_removed(report: IngestReport) -> None:
    """The stored rows an ingest removed, or kept though the file does not hold them."""
    for rule, n in sorted(report.purged_rows.items()):
        text(f"  removed {n} stored row(s) an earlier ingest let in: {rule}")
    if report.replaced_rows:
        text(
            f"  removed {report.replaced_rows} stored row(s) inside the file's span that it "
            "no longer holds"
        )
    if report.replace_withheld:
        text(
            "  stored rows the file does not hold were kept: it has rejected rows (fix them, "
            "and the corrected file replaces its span)"
        )


def print_ingest(report: IngestReport) -> None:
    text(
        f"ingested {report.symbol} {report.timeframe} from {report.source}: "
        f"{report.rows_read} rows read, {report.rows_rejected} rejected, "
        f"{report.new_bars} new, {report.updated_bars} updated, {report.unchanged_bars} unchanged"
    )
    for rule, n in sorted(report.rejects_by_rule.items()):
        text(f"  rejected {n} row(s): {rule}")
    for r in report.rejects[:10]:
        text(
            f"    {r['origin']}: row {r['row']}: field '{r['field']}': {r['rule']} "
            f"(got {r['raw']!r})"
        )
    if report.duplicates_dropped or report.conflicting_rows:
        text(
            f"  duplicates dropped: {report.duplicates_dropped}; conflicting deliveries: "
            f"{report.conflicting_rows}"
        )
    _print_removed(report)
    for layer, months in (("raw", report.raw_partitions_removed),
                          ("canonical", report.canonical_partitions_removed)):  # fmt: skip
        if months:
            text(f"  {layer} partitions removed: {months_shown(months)}")
    flagged = {k: v for k, v in report.flags.items() if k != "ok" and v}
    text(f"  flagged bars: {flagged or 'none'}; missing bars: {report.missing_bars}")
    if report.spacing_hint:
        out.print(f"  [yellow]hint[/] {escape(report.spacing_hint)}")
    quarantined = sorted(report.quarantined.items())
    for month, (reason, detail) in quarantined[:SHOWN_MONTHS]:
        out.print(f"  [yellow]quarantined[/] {month}: {escape(f'{reason}: {detail}')}")
    if len(quarantined) > SHOWN_MONTHS:
        text(f"  … {len(quarantined) - SHOWN_MONTHS} more months quarantined (see the report)")
    written = report.canonical_partitions_written
    text(
        f"  canonical partitions written: {months_shown(written) if written else 0}; "
        f"unchanged: {report.canonical_partitions_unchanged}"
    )
    text(f"  report: {report.report_path}")


SHOWN_MONTHS = 6  # a 30-year file writes 360 months: the console names a few, the report all


def months_shown(months: list[str]) -> str:
    """A few months by name, with the count: ``396: 1990-01, 1990-02, 1990-03, …, 2022-12``."""
    if len(months) <= SHOWN_MONTHS:
        return f"{len(months)}: {', '.join(months)}"
    return f"{len(months)}: {', '.join(months[:3])}, …, {', '.join(months[-2:])}"


def print_demo(result: DemoResult) -> None:
    table = Table(title="ingest (first pass)")
    for col in (
        "symbol",
        "rows",
        "rejected",
        "dups",
        "conflict",
        "filled",
        "outlier",
        "spike",
        "quarantined",
    ):
        table.add_column(col, justify="right" if col != "symbol" else "left")
    for r in result.reports:
        table.add_row(
            r.symbol,
            str(r.rows_read),
            str(r.rows_rejected),
            str(r.duplicates_dropped),
            str(r.flags["conflict"]),
            str(r.flags["filled"]),
            str(r.flags["outlier"]),
            str(r.flags["spike"]),
            ", ".join(sorted(r.quarantined)) or "-",
        )
    out.print(table)
    rewritten = sum(len(r.canonical_partitions_written) for r in result.rerun_reports)
    text(f"re-ingest of the same files rewrote {rewritten} partition(s) (idempotent)")
    c = result.catalog
    text(f"catalog: {c.partitions} partitions, {c.included} included, {c.excluded} excluded")
    caught = sum(ch.caught for ch in result.checks)
    text(f"planted faults caught: {caught}/{len(result.checks)}")
    for ch in result.checks:
        if not ch.caught:
            out.print(
                f"  [red]missed[/] {ch.fault.symbol} {ch.fault.kind} at {ch.fault.ts}: "
                f"{escape(str(ch.seen))}"
            )
    pairs = Table(title="features and labels (from the catalog)")
    for col in ("pair", "bars", "dropped A/B", "warm-up", "AI1 events", "excl.", "AI1 = 1",
                "AI3 mean", "AI2 = 1", "SELL/HOLD/BUY"):  # fmt: skip
        pairs.add_column(col, justify="right" if col != "pair" else "left")
    for p in result.pairs:
        d = p.direction_counts
        pairs.add_row(
            p.pair_id,
            str(p.aligned_bars),
            f"{p.dropped_bars['A']}/{p.dropped_bars['B']}",
            str(p.warm_up_bars),
            str(p.ai1_events),
            str(p.ai1_excluded),
            f"{p.ai1_positive_rate:.0%}",
            f"{p.ai3_mean_target:.2f}",
            f"{p.ai2_positive_rate:.0%}",
            f"{d['SELL']}/{d['HOLD']}/{d['BUY']}",
        )
    out.print(pairs)
    computed = sum(p.months_computed for p in result.pairs)
    cached = sum(p.months_cached for p in result.pairs)
    text(f"feature months computed {computed}, from cache {cached}")


def print_demo_end(result: DemoResult) -> None:
    from mlcore.demo import DEMO_SERVE_BARS

    t = result.timings_s
    text(
        f"time: generate {t['generate_s']:.1f}s, ingest {t['ingest_s']:.1f}s, "
        f"re-ingest {t['reingest_s']:.1f}s, catalog {t['catalog_s']:.1f}s, "
        f"features+labels {t['features_labels_s']:.1f}s, retrain flow (train, θ, backtest, "
        f"publish) {t['retrain_flow_s']:.1f}s, serve {t.get('serve_s', 0.0):.1f}s, "
        f"total {t['total_s']:.1f}s"
    )
    text(f"summary: {result.report_path}")
    if result.retrain is not None:
        print_retrain(result.retrain)
    if result.backtest is not None:
        text(f"adoption decision: {result.backtest.decision.upper()}")
        text(f"report: {result.backtest.report}")
    if result.serving is not None:
        text(f"serving: the catalog's last {DEMO_SERVE_BARS} bar times replayed through the "
                  f"workers as live bars ({result.timings_s['serve_s']:.1f}s)")  # fmt: skip
        print_serve(result.serving)
        print_entry_signal(result.serving.root)
    if result.feedback is not None:
        print_feedback(result.feedback)


def print_entry_signal(root: Path) -> None:
    """The newest entry signal of a serving run (else the newest signal), as JSON."""
    from mlcore.serving import Outbox

    payloads: list[bytes] = []
    for db in sorted((root / "outbox").glob("*.db")):
        box = Outbox(db)
        payloads += box.payloads()
        box.close()
    signals = [json.loads(p) for p in payloads]
    entries = [s for s in signals if s["metadata"]["action"] == "entry"]
    if signals:
        shown = (entries or signals)[-1]
        kind = "entry signal" if entries else "signal"
        text(f"the replay's last {kind} ({shown['pair_id']}):")
        out.print_json(json.dumps(shown))


def print_retrain(outcome: RetrainOutcome) -> None:
    text(
        f"retrain run {outcome.run_id}: {outcome.status}, {outcome.retries} retries "
        "(audit.retrain_runs)"
    )
    if outcome.publish is not None:
        p = outcome.publish
        text(f"registry: {p.model_version} is {p.status} — {p.checklist.notes()}")
        for where in p.notified:
            text(f"serving notified: {where}")
    elif outcome.message:
        text(f"registry: {outcome.message}")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_direction(direction: dict[str, Any]) -> None:
    """The direction ensemble's levels: soft-vote scores next to the no-skill baseline."""
    if not direction:
        return
    if not direction["levels"]:
        skipped = set(direction["skipped_levels"].values())
        text(f"direction ensemble: not trained ({'; '.join(sorted(skipped)) or 'no level'})")
        return
    table = Table(title="direction ensemble (SELL/HOLD/BUY, soft vote)")
    cols = ("level", "set", "rows", "AUC", "PR-AUC", "logloss", "prior logloss", "F1", "ECE")
    keys = ("auc", "pr_auc", "logloss", "prior_logloss", "f1", "ece")
    for col in cols:
        table.add_column(col, justify="left" if col in ("level", "set") else "right")
    for level, m in direction["levels"].items():
        for name, key in (("CV out-of-fold", "cv_out_of_fold"), ("test", "oos")):
            part = m[key]
            table.add_row(
                f"{level} ({len(m['columns'])} features)" if key == "cv_out_of_fold" else "",
                name, str(part["n"]),
                *(fmt(part[k]) for k in keys),
            )  # fmt: skip
    out.print(table)
    for level, m in direction["levels"].items():
        canary = m["canary"]
        verdict = "pass" if canary["passed"] else "FAIL"
        text(
            f"direction level {level}: leakage canary AUC {fmt(canary['auc_mean'])} ({verdict}, "
            f"0.5 +- {canary['tolerance']})"
        )
    for level, reason in direction["skipped_levels"].items():
        text(f"direction level {level}: not trained: {reason}")


def print_train(report: TrainReport) -> None:
    for line in report.skipped:
        text(line)
    table = Table(title=f"model version {report.model_version}")
    for col in ("model", "set", "rows", "positive", "AUC", "PR-AUC", "logloss", "Brier", "ECE"):
        table.add_column(col, justify="left" if col in ("model", "set") else "right")
    sets = (("CV out-of-fold", "cv_out_of_fold"), ("test, raw", "oos_raw"),
            ("test, calibrated", "oos_calibrated"))  # fmt: skip
    for model, m in report.metrics.items():
        for name, key in sets:
            part = m[key]
            table.add_row(
                model.upper() if key == "cv_out_of_fold" else "", name, str(part["n"]),
                f"{part['positive_rate']:.0%}",
                *(f"{part[k]:.3f}" if part[k] is not None else "-"
                  for k in ("auc", "pr_auc", "logloss", "brier", "ece")),
            )  # fmt: skip
    out.print(table)
    for model, m in report.metrics.items():
        canary = m["canary"]
        verdict = "pass" if canary["passed"] else "FAIL"
        text(
            f"{model.upper()}: CV per-fold AUC mean {m['cv_fold_auc_mean']:.3f}; leakage canary "
            f"(shuffled labels) AUC {canary['auc_mean']:.3f} ({verdict}, "
            f"0.5 +- {canary['tolerance']})"
        )
    print_direction(report.direction)
    a3 = report.ai3
    oos = a3["oos"]
    text(
        f"AI3 (position scale in [0, 1]) on {oos['n']} test events: RMSE {oos['rmse']:.3f} "
        f"(predicting the training mean: {a3['oos_mean_baseline_rmse']:.3f}), MAE "
        f"{oos['mae']:.3f}, Spearman {fmt(oos['spearman'])}, R2 {fmt(oos['r2'])}"
    )
    status = {"ok": "[green]ok[/]", "weak": "[yellow]weak[/]"}.get(report.status, "[red]blocked[/]")
    why = "; ".join(report.blocked_reasons)
    if report.status == "weak":
        why = "(the warnings below; the backtest's gates decide its adoption)"
    out.print(f"retrain_status={status} {escape(why)}".rstrip())
    for warning in report.warnings:
        out.print(f"[yellow]warning[/] {escape(warning)}")
    text(f"model: {report.folder}")


def print_theta(th: ThetaRun) -> None:
    s, st = th.search, th.stabilised
    text(
        f"θ search on {th.search_start:%Y-%m-%d} .. {th.test_start:%Y-%m-%d}: {s.n_trials} "
        f"settings ({s.n_trials - s.optuna_trials} grid + {s.optuna_trials} Optuna"
        f"{', stopped early' if s.stopped_early else ''}); best θ = ({s.best[0]:.4f}, "
        f"{s.best[1]:.4f}), objective {s.best_objective:.4f}"
    )
    for step in st.steps:
        text(f"  {step}")
    text(
        f"θ adopted = ({st.theta[0]:.4f}, {st.theta[1]:.4f}) (previous ({st.previous[0]:.4f}, "
        f"{st.previous[1]:.4f})); gate pass rate (risk < θ2) {st.gate_pass_rate:.1%}"
    )


def print_backtest(rep: BacktestReport) -> None:
    t = rep.test
    if rep.lineage.get("model_registered") is False:
        text(f"UNREGISTERED model version {rep.model_version}: its files were not checked "
             "against the registry (results and report say so)")  # fmt: skip
    text(
        f"test window from {rep.lineage['test_window_start'][:10]}: annual return "
        f"{fmt(t.get('annual_return'))}, Sharpe {fmt(t.get('sharpe'))}, MaxDD "
        f"{fmt(t.get('max_drawdown'))}, {t.get('trades', 0)} trades "
        f"({fmt(t.get('trades_per_year'))}/year), win rate {fmt(t.get('win_rate'))}"
    )
    z = rep.zscore_test
    if z:
        text(
            f"plain z-score rule (no AI gates), same window, costs and sizing: annual return "
            f"{fmt(z.get('annual_return'))}, Sharpe {fmt(z.get('sharpe'))}, MaxDD "
            f"{fmt(z.get('max_drawdown'))}, {z.get('trades', 0)} trades"
        )
    for line in rep.no_trades.values():
        text(line)
    stress = Table(title="stress scenarios (test window, adopted θ)")
    for col in ("scenario", "annual return", "Sharpe", "MaxDD", "trades/year"):
        stress.add_column(col, justify="left" if col == "scenario" else "right")
    for row in rep.stress.to_dict("records"):
        stress.add_row(
            str(row["scenario"]),
            *(fmt(row[k]) for k in ("annual_return", "sharpe", "max_drawdown", "trades_per_year")),
        )
    out.print(stress)
    gates = Table(title=f"adoption gates: {rep.decision.upper()}")
    for col in ("gate", "value", "threshold", "result", "reason"):
        gates.add_column(col)
    for g in rep.gates:
        value = g["value"]
        gates.add_row(
            g["gate"], "-" if value is None else f"{value:.4f}", escape(g["threshold"]),
            "[green]pass[/]" if g["passed"] else "[red]FAIL[/]", escape(g["reason"]),
        )  # fmt: skip
    out.print(gates)
    text(f"decision: {rep.decision} (model version {rep.model_version})")
    text(f"results: {rep.folder}")
    text(f"report: {rep.report}")


def _record_cells(r: ModelRecord) -> dict[str, str]:
    return {
        "version": r.model_version,
        "status": r.status,
        "timeframe": r.timeframe,
        "θ1": "-" if r.theta1 is None else f"{r.theta1:.4f}",
        "θ2": "-" if r.theta2 is None else f"{r.theta2:.4f}",
        "created": f"{r.created_at:%Y-%m-%d %H:%M}",
        "deployed": "-" if r.deployed_at is None else f"{r.deployed_at:%Y-%m-%d %H:%M}",
        "code": r.code_hash[:7],
        "notes": escape(r.notes),
    }


def record_table(records: list[ModelRecord], title: str) -> Table:
    """Model versions, one a row (the version column is never cut)."""
    table = Table(title=title)
    version_column(table)
    for col in ("status", "timeframe", "θ1", "θ2", "created", "deployed", "code", "notes"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(*_record_cells(r).values())
    return table


def print_records(records: list[ModelRecord], title: str) -> None:
    """Model versions as a table when the console is wide enough for one, else one block of
    ``field value`` lines a version (an 80-column terminal), so nothing is ever cut."""
    if out.width >= RECORD_TABLE_MIN_WIDTH:
        out.print(record_table(records, title))
        return
    text(title)
    for r in records:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(overflow="fold")
        for name, value in _record_cells(r).items():
            grid.add_row(name, value)
        out.print(grid)
        text("")


def print_serve(summary: Any) -> None:
    c = summary.counts
    m = summary.model
    text(f"model {m.version} (θ1={m.theta[0]:.2f}, θ2={m.theta[1]:.2f}): {m.why}")
    for line in summary.skipped:
        text(line)
    if not m.registered:
        text("  not registered: every signal carries metadata.model_registered = false")
    for spec in summary.workers:
        text(f"  {spec.worker_id}: {', '.join(spec.pair_ids)}")
    actions = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("signal:")}
    refused = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("refused:")}
    text(
        f"signals {sum(actions.values())} ("
        + ", ".join(f"{a} {n}" for a, n in sorted(actions.items())) + "); "
        + "bars refused " + (", ".join(f"{r} {n}" for r, n in sorted(refused.items())) or "0")
    )  # fmt: skip
    text(f"signal.json files under {summary.root / 'signals'}; outboxes under "
              f"{summary.root / 'outbox'}")  # fmt: skip
    if summary.redis_stream is not None:
        replay = any(s.replay_redis for s in summary.workers)
        text(f"signals on Redis stream {summary.redis_stream}"
             + (" (a replay: past bars, valid_until long past; never the live stream)"
                if replay else ""))  # fmt: skip
    for event in summary.events:
        text(f"  {event}")


def fmt_or_dash(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted, or ``-`` when undefined."""
    return "-" if value is None else format(value, spec)


def kpi_line(k: LiveKpis) -> str:
    """One line of a version's KPIs for a pair (or the book) and window."""
    t, g, f, s, d = k.trades, k.gates, k.flags, k.slo, fmt_or_dash
    gap = (
        f" gap sharpe {d(k.gaps.sharpe, '+.2f')} win {d(k.gaps.win_rate, '+.2f')}"
        if k.gaps else " (no backtest to compare)"
    )  # fmt: skip
    return (
        f"{k.model_version} {k.pair_id:>8} {k.window_days:>3}d: {t.n_trades} trades on "
        f"{t.n_bars} bars, P&L {t.pnl_usd:.2f} USD, win {d(t.win_rate, '.2f')}, "
        f"sharpe {d(t.sharpe, '.2f')}, maxDD {d(t.max_drawdown, '.4f')}, "
        f"trades/yr {d(t.trades_per_year, '.1f')}, AI2 refusal {d(g.ai2_refusal_rate, '.2f')} "
        f"of {g.candidates} candidates, θ1 pass {d(g.theta1_pass_rate, '.2f')}, risk_flag "
        f"precision {d(f.precision, '.2f')} recall {d(f.recall, '.2f')}; inference p95 "
        f"{d(None if s.inference_p95_seconds is None else 1000 * s.inference_p95_seconds, '.1f')}"
        f" ms ({s.inference_over_slo} over the SLO), {s.refused_bars} bars refused;{gap}"
    )


def print_feedback(f: LoopSummary) -> None:
    """The demo's feedback loop: fills, live trades, quarantine, the book's KPIs."""
    text(f"feedback loop ({f.seconds:.1f}s): {f.fills} simulated fills of {f.signals} served "
         f"entry/exit signals -> {f.new_trades} new live trades ({f.live_trades} in "
         f"core.live_trades, {f.closed_trades} closed, realized P&L {f.pnl_usd:.2f} USD), "
         f"{f.quarantined} fills quarantined")  # fmt: skip
    for k in f.kpis:
        text(f"  {kpi_line(k)}")
    if f.kpis_skipped:
        text(f"  live KPIs not computed: {f.kpis_skipped}")
