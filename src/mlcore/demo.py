"""The main job on the embedded default: generate a market, ingest it, build the catalog,
check that every planted fault was caught, build features and labels, then run one retraining
(``core_retrain_flow`` in Prefect's ephemeral mode: train, backtest with θ search, stress and
adoption gates, HTML report, registry and publication)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlcore._progress import stage_done
from mlcore.backtest import BacktestReport
from mlcore.config import AppConfig, PairSpec
from mlcore.data import (
    Catalog,
    CatalogSummary,
    FileProvider,
    IngestReport,
    PlantedFault,
    SyntheticMarket,
    SyntheticPair,
    build_catalog,
    generate_market,
    ingest,
    malformed_rows,
    write_atomic,
)
from mlcore.data._store import json_bytes
from mlcore.feedback import LoopSummary, loop_dict, loop_once
from mlcore.labels import BUY, HOLD, SELL
from mlcore.registry import database_url, make_engine
from mlcore.training import TrainReport, label_pair, train_models

if TYPE_CHECKING:
    from mlcore.flows import RetrainOutcome
    from mlcore.serving import ServeSummary

DEMO_TIMEFRAME = "1h"
DEMO_END = pd.Timestamp("2024-12-31 23:00", tz="UTC")
DEMO_MONTHS = 24  # the market's length: 2023-01 to 2024-12
DEMO_MONTHS_RANGE = (8, 120)  # at least back to the quarantined month; at most ten years
DEMO_QUARANTINE = ("XAG/USD", "2024-05", 5)
DEMO_SERVE_BARS = 240  # bar times replayed through a worker at the end


@dataclass
class FaultCheck:
    """Whether one planted fault was caught."""

    fault: PlantedFault
    caught: bool
    seen: str


@dataclass
class PairSummary:
    """Features and labels of one pair, as the demo reports them."""

    pair_id: str
    aligned_bars: int
    dropped_bars: dict[str, int]
    warm_up_bars: int
    ai1_events: int
    ai1_excluded: int
    ai1_censored: int
    ai1_positive_rate: float
    ai3_mean_target: float
    ai2_positive_rate: float
    direction_counts: dict[str, int]
    months_computed: int
    months_cached: int
    segments: int


@dataclass
class DemoResult:
    """Everything the demo did, for the printed summary and the JSON report."""

    incoming: dict[str, Path]
    reports: list[IngestReport]
    rerun_reports: list[IngestReport]
    catalog: CatalogSummary
    checks: list[FaultCheck]
    pairs: list[PairSummary] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None
    training: TrainReport | None = None
    backtest: BacktestReport | None = None
    retrain: RetrainOutcome | None = None
    serving: ServeSummary | None = None
    feedback: LoopSummary | None = None

    @property
    def all_caught(self) -> bool:
        """True when every planted fault was caught."""
        return all(c.caught for c in self.checks)


def demo_start(months: int) -> pd.Timestamp:
    """The first bar of a demo market ``months`` long that ends with December 2024."""
    low, high = DEMO_MONTHS_RANGE
    if not low <= months <= high:
        raise ValueError(f"months must be in [{low}, {high}] (ending 2024-12), got {months}")
    return (DEMO_END + pd.Timedelta(hours=1)) - pd.DateOffset(months=months)


def write_incoming(
    market: SyntheticMarket, folder: Path, malformed_symbol: str | None
) -> dict[str, Path]:
    """Write each symbol's bars as a vendor-style CSV (with broken rows in one file)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for sym, bars in market.bars.items():
        frame = bars.copy()
        frame["ts"] = pd.DatetimeIndex(frame["ts"]).strftime("%Y-%m-%d %H:%M:%S")
        if sym == malformed_symbol:
            frame = pd.concat([frame, malformed_rows(bars)], ignore_index=True)
        frame = frame.rename(
            columns={
                "ts": "Datetime",
                "open": "Open",
                "high": "High",
                "low": "Low",
                "close": "Close",
                "volume": "Volume",
            }
        )
        path = folder / f"{sym.replace('/', '')}_{DEMO_TIMEFRAME}.csv"
        write_atomic(path, frame.to_csv(index=False, float_format="%.10g").encode())
        paths[sym] = path
    return paths


def _flag_at(cat: Catalog, sym: str, ts: pd.Timestamp, n: int) -> list[str]:
    bars = cat.load_bars(DEMO_TIMEFRAME, sym, ts, ts + pd.Timedelta(hours=n - 1))
    return [str(x) for x in bars["quality_flag"]]


def check_faults(
    cfg: AppConfig, market: SyntheticMarket, reports: list[IngestReport]
) -> list[FaultCheck]:
    """Compare what ingestion flagged with what was planted."""
    cat = Catalog(cfg)
    by_sym = {r.symbol: r for r in reports}
    checks = []
    for f in market.faults:
        ts = pd.Timestamp(f.ts)
        month = ts.strftime("%Y-%m")
        if f.kind == "gap_quarantine":
            excl = {p["month"]: p["reasons"] for p in cat.excluded(DEMO_TIMEFRAME, f.symbol)}
            caught = month in by_sym[f.symbol].quarantined and "quarantined" in excl.get(month, [])
            checks.append(FaultCheck(f, caught, f"month {month} excluded: {excl.get(month)}"))
        elif f.kind == "duplicate":
            n = by_sym[f.symbol].duplicates_dropped
            checks.append(FaultCheck(f, n >= 1, f"{n} exact repeat(s) dropped"))
        elif month in {p["month"] for p in cat.excluded(DEMO_TIMEFRAME, f.symbol)}:
            # Planted in a month the catalog excludes: none of its bars reaches a later stage.
            checks.append(FaultCheck(f, True, f"in month {month}, excluded from the catalog"))
        else:
            flags = _flag_at(cat, f.symbol, ts, f.n_bars)
            caught = len(flags) == f.n_bars and all(x == f.expect for x in flags)
            checks.append(FaultCheck(f, caught, f"flags {flags}"))
    return checks


def summarize_pair(cfg: AppConfig, cat: Catalog, pair: PairSpec) -> PairSummary:
    """Build (or reuse) the pair's cached features and label them (AI1, AI2, AI3, direction).

    Labels are computed per segment of unbroken history, so no horizon spans an excluded month.
    """
    lp = label_pair(cfg, cat, pair, DEMO_TIMEFRAME)
    events, risk, direction = lp.events, lp.risk, lp.direction
    labelled = events[events["label"] >= 0]
    names = {SELL: "SELL", HOLD: "HOLD", BUY: "BUY"}
    known = risk[risk >= 0]
    return PairSummary(
        pair_id=pair.pair_id,
        aligned_bars=len(lp.features),
        dropped_bars=lp.build.dropped_bars,
        warm_up_bars=lp.build.warm_up_bars,
        months_computed=len(lp.build.months_computed),
        months_cached=len(lp.build.months_cached),
        ai1_events=len(events),
        ai1_excluded=int(events["excluded"].sum()),
        ai1_censored=int(events["censored"].sum()),
        ai1_positive_rate=float((labelled["label"] == 1).mean()) if len(labelled) else float("nan"),
        ai3_mean_target=float(events["ai3"].mean()),
        ai2_positive_rate=float((known == 1).mean()) if len(known) else float("nan"),
        direction_counts={names[k]: int((direction == k).sum()) for k in names},
        segments=int(lp.features["segment"].nunique()),
    )


def ingest_files(cfg: AppConfig, incoming: dict[str, Path]) -> list[IngestReport]:
    """Ingest each symbol's CSV file through the file provider (idempotent: the same files
    again rewrite nothing)."""
    tol = cfg.pipeline.dq_thresholds.price_abs_tolerance
    return [
        ingest(
            cfg,
            FileProvider(path, price_abs_tolerance=tol).read(DEMO_TIMEFRAME),
            sym,
            DEMO_TIMEFRAME,
        )
        for sym, path in incoming.items()
    ]


def train_generated(
    cfg: AppConfig, pairs: list[SyntheticPair], years: int, seed: int = 7
) -> TrainReport:
    """Generate clean bars of ``pairs`` over ``years`` from the demo's start, ingest them,
    build the catalog and train AI1, AI2 and AI3 on them: the demo's pipeline on a market of
    one's choosing (such as :func:`mlcore.data.regime_pairs`)."""
    cals = {s: cfg.universe.calendars[i.calendar] for s, i in cfg.universe.instruments.items()}
    start = demo_start(DEMO_MONTHS)
    end = start + pd.DateOffset(years=years) - pd.Timedelta(hours=1)
    market = generate_market(cals, DEMO_TIMEFRAME, start, end, seed, pairs=pairs, with_faults=False)
    incoming = write_incoming(market, cfg.paths.archive / "incoming", malformed_symbol=None)
    ingest_files(cfg, incoming)
    build_catalog(cfg)
    return train_models(cfg, Catalog(cfg), DEMO_TIMEFRAME, seed=seed, direction=False)


def _serve_replay(cfg: AppConfig, retrain: RetrainOutcome) -> ServeSummary | None:
    """Serve the catalog's last DEMO_SERVE_BARS bar times through a worker process, as live
    bars: the deployed version if the flow deployed one, else the version it trained."""
    if retrain.training is None:
        return None
    from mlcore.serving import serve  # worker processes start only for the runs that serve

    deployed = retrain.publish is not None and retrain.publish.status == "deployed"
    model = None if deployed else retrain.training.model_version
    # A replay into the demo's own folder shows what the version would do; the outcome above
    # says it was rejected, so serving it here is the demo's choice, as --force-rejected is.
    return serve(cfg, model=model, replay_last=DEMO_SERVE_BARS, exit_when_idle_seconds=1.0,
                 force_rejected=not deployed)  # fmt: skip


def record_replay(cfg: AppConfig, serving_root: Path) -> int:
    """Copy a replay's signals (its workers' outboxes: a replay writes no live table) into
    the demo registry's core.signals_live, so that fills have signals to answer; returns how
    many were read."""
    from mlcore.serving import Outbox, aggregate  # serving's stack loads only for the demo

    engine = make_engine(database_url(cfg))
    done = 0
    for db in sorted((serving_root / "outbox").glob("*.db")):
        box = Outbox(db)
        try:
            done += aggregate(box, engine)
        finally:
            box.close()
    return done


def prepare_market(
    cfg: AppConfig,
    seed: int = 7,
    months: int = DEMO_MONTHS,
    timings: dict[str, float] | None = None,
) -> tuple[SyntheticMarket, dict[str, Path], list[IngestReport]]:
    """Generate the demo's market (planted faults, one quarantined month), write it as vendor
    CSV files under the archive's incoming/ and ingest them: the demo's data steps, which a
    flow or a test can build on (then `build_catalog`)."""
    timings = {} if timings is None else timings
    start = demo_start(months)
    t0 = time.perf_counter()
    cals = {s: cfg.universe.calendars[i.calendar] for s, i in cfg.universe.instruments.items()}
    market = generate_market(
        cals, DEMO_TIMEFRAME, start, DEMO_END, seed, quarantine=DEMO_QUARANTINE
    )
    incoming = write_incoming(market, cfg.paths.archive / "incoming", malformed_symbol="EUR/USD")
    timings["generate_s"] = time.perf_counter() - t0
    stage_done("generate", f"{len(incoming)} files", timings["generate_s"])
    t1 = time.perf_counter()
    reports = ingest_files(cfg, incoming)
    timings["ingest_s"] = time.perf_counter() - t1
    stage_done(
        "ingest",
        f"{len(reports)} files, {sum(r.rows_read for r in reports):,} rows",
        timings["ingest_s"],
    )
    return market, incoming, reports


def run_demo(cfg: AppConfig, seed: int = 7, months: int = DEMO_MONTHS) -> DemoResult:
    """Run the pipeline on a generated market of ``months`` months (ending 2024-12) and return
    what happened. Fewer months make a quicker run."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    market, incoming, reports = prepare_market(cfg, seed, months, timings)
    t2 = time.perf_counter()
    rerun = ingest_files(cfg, incoming)
    timings["reingest_s"] = time.perf_counter() - t2
    stage_done("re-ingest", f"{len(rerun)} files", timings["reingest_s"])
    t3 = time.perf_counter()
    catalog = build_catalog(cfg)
    timings["catalog_s"] = time.perf_counter() - t3
    stage_done("catalog", f"{catalog.partitions} partitions", timings["catalog_s"])
    checks = check_faults(cfg, market, reports)
    t4 = time.perf_counter()
    cat = Catalog(cfg)
    pairs = [summarize_pair(cfg, cat, p) for p in cfg.universe.pairs]
    timings["features_labels_s"] = time.perf_counter() - t4
    stage_done("features+labels", f"{len(pairs)} pairs", timings["features_labels_s"])
    t5 = time.perf_counter()
    from mlcore.flows import run_retrain  # Prefect loads only for the runs that use it

    retrain = run_retrain(cfg, timeframe=DEMO_TIMEFRAME)
    timings["retrain_flow_s"] = time.perf_counter() - t5
    stage_done("retrain flow", retrain.status, timings["retrain_flow_s"])
    t6 = time.perf_counter()
    serving = _serve_replay(cfg, retrain)
    timings["serve_s"] = time.perf_counter() - t6
    stage_done("serve", "replayed" if serving is not None else "skipped", timings["serve_s"])
    feedback = None
    if serving is not None:
        record_replay(cfg, serving.root)
        feedback = loop_once(cfg, make_engine(database_url(cfg)))
    if feedback is not None:
        timings["feedback_s"] = feedback.seconds
        stage_done("feedback", f"{feedback.live_trades} live trades", feedback.seconds)
    timings["total_s"] = time.perf_counter() - t0
    result = DemoResult(incoming, reports, rerun, catalog, checks, pairs, timings)
    result.training = retrain.training
    result.backtest = retrain.backtest
    result.retrain = retrain
    result.serving = serving
    result.feedback = feedback
    path = cfg.paths.reports / "demo_summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json_bytes(summary_dict(result, market)))
    result.report_path = path
    return result


def summary_dict(result: DemoResult, market: SyntheticMarket) -> dict[str, Any]:
    """The demo's outcome as JSON-able data."""
    return {
        "ingest": [
            {k: v for k, v in r.to_dict().items() if k != "rejects"} for r in result.reports
        ],
        "reingest_partitions_written": sum(
            len(r.canonical_partitions_written) for r in result.rerun_reports
        ),
        "catalog": {
            "partitions": result.catalog.partitions,
            "included": result.catalog.included,
            "excluded": result.catalog.excluded,
            "catalog_hash": result.catalog.catalog_hash,
        },
        "faults": [
            {
                "symbol": c.fault.symbol,
                "kind": c.fault.kind,
                "ts": c.fault.ts,
                "caught": c.caught,
                "seen": c.seen,
            }
            for c in result.checks
        ],
        "pairs": [asdict(p) for p in result.pairs],
        "training": None
        if result.training is None
        else {
            "model_version": result.training.model_version,
            "folder": str(result.training.folder),
            "retrain_status": result.training.status,
            "blocked_reasons": result.training.blocked_reasons,
            "rows_per_pair": result.training.events,
            "models": {
                name: {
                    "cv_out_of_fold_auc": m["cv_out_of_fold"]["auc"],
                    "cv_fold_auc_mean": m["cv_fold_auc_mean"],
                    "oos_raw_auc": m["oos_raw"]["auc"],
                    "oos_calibrated_auc": m["oos_calibrated"]["auc"],
                    "oos_calibrated_pr_auc": m["oos_calibrated"]["pr_auc"],
                    "oos_calibrated_brier": m["oos_calibrated"]["brier"],
                    "oos_calibrated_ece": m["oos_calibrated"]["ece"],
                    "canary_auc": m["canary"]["auc_mean"],
                }
                for name, m in result.training.metrics.items()
            },
            "direction": {
                "levels": {
                    level: {
                        k: m["oos"][k]
                        for k in ("n", "auc", "pr_auc", "logloss", "prior_logloss", "f1", "ece")
                    }
                    | {"canary_auc": m["canary"]["auc_mean"]}
                    for level, m in result.training.direction["levels"].items()
                },
                "skipped_levels": result.training.direction["skipped_levels"],
            },
            "ai3": {
                "oos": result.training.ai3["oos"],
                "oos_mean_baseline_rmse": result.training.ai3["oos_mean_baseline_rmse"],
            },
        },
        "backtest": None
        if result.backtest is None
        else {
            "decision": result.backtest.decision,
            "gates": result.backtest.gates,
            "theta": list(result.backtest.theta_run.stabilised.theta),
            "test": {
                k: result.backtest.test.get(k)
                for k in ("annual_return", "sharpe", "max_drawdown", "trades_per_year")
            },
            "results": str(result.backtest.folder),
            "report": str(result.backtest.report),
        },
        "retrain": None
        if result.retrain is None
        else {
            "run_id": result.retrain.run_id,
            "status": result.retrain.status,
            "retries": result.retrain.retries,
            "model_version": result.retrain.model_version,
            "registry_status": result.retrain.publish.status if result.retrain.publish else None,
            "registry_notes": result.retrain.publish.checklist.notes()
            if result.retrain.publish
            else None,
            "notified": result.retrain.publish.notified if result.retrain.publish else [],
        },
        "serving": None
        if result.serving is None
        else {
            "model_version": result.serving.model.version,
            "why": result.serving.model.why,
            "workers": [list(w.pair_ids) for w in result.serving.workers],
            "counts": dict(sorted(result.serving.counts.items())),
            "signals": str(result.serving.root / "signals"),
        },
        "feedback": None if result.feedback is None else loop_dict(result.feedback),
        "truth": market.manifest(),
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
    }
