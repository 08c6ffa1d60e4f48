"""A backtest run of one model version: score the universe's bars, search θ on the search
window, stabilise it, judge adoption on the test window, stress it, and write the results.

``{reports}/backtest/{model_version}/`` holds ``bt_summary.parquet``, ``bt_trades.parquet``,
``bt_daily_equity.parquet``, ``bt_stress_results.parquet`` (every row stamped with
``model_version``, ``feature_schema_hash``, ``code_hash`` and ``seed``), ``theta_search.parquet``,
``backtest.json`` (decision, gates with reasons, θ, metrics, lineage) and ``report.html``. They
are written together or not at all; the same data, configuration, code and seed give the same
bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcore.backtest._explain import why_found_trades_none, why_no_trades, zscore_rule
from mlcore.backtest._gates import Decision, evaluate_gates
from mlcore.backtest._inputs import PairBars, pair_bars
from mlcore.backtest._overfit import deflated_sharpe, probability_of_overfitting
from mlcore.backtest._portfolio import (
    AccountRules,
    PairSetup,
    PortfolioRun,
    account_rules,
    pair_setups,
    run_portfolio,
)
from mlcore.backtest._report import ReportInputs, render_report
from mlcore.backtest._stress import run_stress
from mlcore.backtest._theta import SearchResult, Stabilised, search_theta, stabilise
from mlcore.config import AppConfig
from mlcore.data import Catalog, replace_dir
from mlcore.data._atomic import write_atomic
from mlcore.errors import MissingDataError, MissingInputError
from mlcore.execution import BACKTEST_RECORD, PairModels, previous_theta, version_config
from mlcore.observability import bind, record_backtest, record_theta
from mlcore.training import code_hash


@dataclass
class BacktestReport:
    """What a backtest run decided and where it wrote it."""

    model_version: str
    folder: Path
    report: Path
    decision: Decision
    gates: list[dict[str, Any]]
    theta_run: ThetaRun
    test: dict[str, Any]
    stress: pd.DataFrame
    lineage: dict[str, Any]
    #: the plain z-score rule (every AI gate open) on the test window, same costs and sizing
    zscore_test: dict[str, Any] = field(default_factory=dict)
    #: window ("search", "test") -> why it has no trade
    no_trades: dict[str, str] = field(default_factory=dict)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _json(data: Any) -> bytes:
    return (json.dumps(_clean(data), sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _parquet(frame: pd.DataFrame, lineage: dict[str, Any]) -> bytes:
    out = frame.copy()
    for key in ("model_version", "feature_schema_hash", "code_hash", "seed"):
        out[key] = lineage[key]
    buf = io.BytesIO()
    out.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def _distinct(columns: list[np.ndarray]) -> np.ndarray:
    """The distinct, non-flat return series (θ settings that trade identically count once; one
    that never trades is no strategy)."""
    if not columns:
        return np.zeros((0, 0))
    m = np.round(np.column_stack(columns), 12)
    m = np.unique(m, axis=1)
    kept: np.ndarray = m[:, np.ptp(m, axis=0) > 0]
    return kept


def _dsr(test: PortfolioRun, search: SearchResult, hyper_trials: int) -> tuple[float | None, str]:
    series = _distinct([run.returns for run in search.runs.values()])
    sd = series.std(axis=0, ddof=0)
    sharpes = series.mean(axis=0) / sd
    n = series.shape[1] + hyper_trials
    var = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    basis = (
        f"{n} trials ({series.shape[1]} distinct θ return series of {search.n_trials} settings "
        f"+ {hyper_trials} hyperparameter trials), per-day Sharpe variance {var:.3g}"
    )
    try:
        return deflated_sharpe(test.returns, max(n, 1), var), basis
    except ValueError as exc:
        return None, str(exc)


def _pbo(search: SearchResult, splits: int) -> tuple[float | None, str]:
    grid = _distinct(list(search.grid_returns.T))
    basis = f"CSCV, {splits} blocks, over {grid.shape[1]} distinct θ-grid return series"
    try:
        return probability_of_overfitting(grid, splits)["pbo"], basis
    except ValueError as exc:
        return None, f"{basis}: {exc}"


def _hyper_trials(models: PairModels) -> int:
    total = 0
    for name in ("ai1", "ai2", "ai3"):
        tuning = models.metrics.get(name, {}).get("tuning", {})
        total += int(tuning.get("trials", 0) or 0)
    return total


def _score_all(
    cfg: AppConfig, cat: Catalog, models: PairModels, timeframe: str, pair_ids: set[str]
) -> list[PairBars]:  # fmt: skip
    return [pair_bars(cfg, cat, models, p, timeframe) for p in cfg.universe.pairs
            if p.pair_id in pair_ids]  # fmt: skip


def _windows(
    bars: list[PairBars], start: pd.Timestamp | None, end: pd.Timestamp | None
) -> list[PairBars]:
    cut = [b.window(start, end) for b in bars]
    return [b for b in cut if len(b.ts_ns) >= 2]


@dataclass
class ThetaRun:
    """θ search and stabilisation of one model version, with what the backtest reuses."""

    models: PairModels
    baseline: PairModels | None
    timeframe: str
    seed: int
    search_start: pd.Timestamp
    test_start: pd.Timestamp
    search_bars: list[PairBars]
    test_bars: list[PairBars]
    setups: dict[str, PairSetup]
    search: SearchResult
    stabilised: Stabilised
    previous_source: str
    account: AccountRules
    #: the configuration with the version's decision parameters in place of the policy files'
    config: AppConfig


def optimize_theta(
    cfg: AppConfig, cat: Catalog, model_folder: Path, *, baseline_folder: Path | None = None,
    seed: int | None = None, restore: Callable[[str], object] | None = None,
) -> ThetaRun:  # fmt: skip
    """Search θ on the version's search window (grid, then Optuna) and stabilise it against
    the θ in force (the baseline's adopted θ, else core_policy's)."""
    models = PairModels.load(model_folder, restore)
    timeframe = str(models.params["timeframe"])
    search_start, test_start = models.windows()
    seed = int(models.params["seed"]) if seed is None else seed
    unknown = sorted(models.pairs() - {p.pair_id for p in cfg.universe.pairs})
    if unknown:
        raise MissingInputError(
            "UNIVERSE_PAIR_UNKNOWN",
            f"model version {models.version} was trained on pairs {unknown} that universe.yaml "
            "does not list: add them back or train a version on the listed pairs",
            details={"pairs": unknown},
        )
    # Labels, windows, costs, trading rules, time stop, sizing: the version's, not today's.
    cfg = version_config(cfg, models.decision_params())
    bars = _score_all(cfg, cat, models, timeframe, models.pairs())
    search_bars = _windows(bars, search_start, test_start)
    test_bars = _windows(bars, test_start, None)
    if not search_bars or not test_bars:
        raise MissingDataError(
            "DATA_WINDOW_NO_BARS",
            f"model version {models.version}: no bars of {sorted(models.pairs())} in the search "
            f"window from {search_start} or the test window from {test_start}; ingest "
            f"{timeframe} bars for them first",
        )
    setups = pair_setups(cfg, timeframe, {b.pair_id for b in bars})
    account = account_rules(cfg, timeframe)
    box = cfg.core.theta_search_range

    def on_search(t1: float, t2: float) -> PortfolioRun:
        return run_portfolio(search_bars, setups, t1, t2, account=account)

    search = search_theta(on_search, box, cfg.backtest.theta_search, seed)
    bind(cfg)
    record_theta(search.n_trials, search.best_objective)
    baseline = PairModels.load(baseline_folder, restore) if baseline_folder is not None else None
    if baseline is not None and baseline.params["timeframe"] != timeframe:
        raise ValueError(
            f"model in service {baseline.version} is on {baseline.params['timeframe']} bars, the "
            f"candidate {models.version} on {timeframe}: they cannot be compared"
        )
    previous, source = previous_theta(cfg, baseline)
    found_run = search.runs[search.best]
    trades = int(found_run.metrics.get("trades") or 0)
    found_why = why_found_trades_none(search_bars, setups, search.best, trades, box)
    stab = stabilise(
        search.best, previous, found_run, on_search(*previous),
        np.concatenate([b.risk for b in search_bars]), cfg.backtest.stabilisation, box,
        found_why,
    )  # fmt: skip
    return ThetaRun(models, baseline, timeframe, seed, search_start, test_start, search_bars,
                    test_bars, setups, search, stab, source, account, cfg)  # fmt: skip


def run_backtest(
    cfg: AppConfig, cat: Catalog, model_folder: Path, *, baseline_folder: Path | None = None,
    seed: int | None = None, restore: Callable[[str], object] | None = None,
    theta_run: ThetaRun | None = None, model_registered: bool = True,
) -> BacktestReport:  # fmt: skip
    """Backtest the model version in ``model_folder`` (θ search, gates, stress) and write the
    results; ``baseline_folder`` is the model in service, for the non-inferiority gate.
    ``theta_run`` is a θ search already made for this version and baseline (else one is).
    ``model_registered=False`` (``--unregistered``) marks the lineage and the report's title:
    the registry does not vouch for the version's files."""
    started = time.monotonic()
    th = theta_run
    if th is None:
        th = optimize_theta(
            cfg, cat, model_folder, baseline_folder=baseline_folder, seed=seed, restore=restore
        )
    elif th.models.version != model_folder.name:
        raise ValueError(f"the θ search given is for {th.models.version}, not {model_folder.name}")
    models, baseline, timeframe, seed = th.models, th.baseline, th.timeframe, th.seed
    search_start, test_start = th.search_start, th.test_start
    search_bars, test_bars, setups = th.search_bars, th.test_bars, th.setups
    search, stab = th.search, th.stabilised
    previous = stab.previous
    policy = cfg.backtest
    account = th.account
    test_run = run_portfolio(test_bars, setups, *stab.theta, account=account)
    dsr, dsr_note = _dsr(test_run, search, _hyper_trials(models))
    pbo, pbo_note = _pbo(search, policy.gates.pbo_splits)
    baseline_metrics = None
    if baseline is not None:
        # The model in service, on the candidate's pairs and test window, at its own θ and
        # (when it records them) its own labels and windows.
        pairs = {b.pair_id for b in test_bars}
        old_cfg = th.config
        if baseline.decision is not None:
            old_cfg = version_config(cfg, baseline.decision)
            old_cfg = replace(old_cfg, universe=th.config.universe)  # the candidate's pairs
        old_bars = _windows(_score_all(old_cfg, cat, baseline, timeframe, pairs), test_start, None)
        baseline_metrics = run_portfolio(old_bars, setups, *previous, account=account).metrics
    decision, gates = evaluate_gates(test_run.metrics, dsr, pbo, baseline_metrics, policy.gates)
    stress, _ = run_stress(test_bars, setups, stab.theta, policy.stress, account)
    zscore = run_portfolio(zscore_rule(test_bars), setups, 0.0, 1.0, account=account).metrics
    box = cfg.core.theta_search_range
    no_trades: dict[str, str] = {}
    if not (search.tried["trades_per_year"].fillna(0.0) > 0).any():
        # At the most permissive θ of the range: no θ the search could pick trades.
        widest = (box.theta1[0], box.theta2[1])
        no_trades["search"] = why_no_trades(search_bars, setups, widest, box, "search")
    if not test_run.metrics.get("trades"):
        no_trades["test"] = why_no_trades(test_bars, setups, stab.theta, box, "test")
    lineage = {
        "model_version": models.version,
        "feature_schema_hash": models.feature_schema_hash,
        "code_hash": code_hash(),
        "model_code_hash": str(models.run.get("code_hash", "unknown")),
        "data_hash": str(models.run.get("data_hash", "unknown")),
        "seed": seed,
        "config_hash": _config_hash(cfg),
        "params_sha256": models.decision_params().sha256,
        "baseline_version": baseline.version if baseline is not None else None,
        "timeframe": timeframe,
        "search_window": [str(search_start), str(test_start)],
        "test_window_start": str(test_start),
        "model_registered": model_registered,
    }
    summary = dict(test_run.metrics)
    summary.update({"deflated_sharpe": dsr, "pbo": pbo, "theta1": stab.theta[0],
                    "theta2": stab.theta[1], "decision": decision.value})  # fmt: skip
    record = {
        "decision": decision.value,
        "gates": gates,
        "theta": {
            "adopted": list(stab.theta),
            "found": list(stab.found),
            "previous": list(stab.previous),
            "kept_previous": stab.kept_previous,
            "previous_source": th.previous_source,
            "steps": stab.steps,
            "gate_pass_rate": stab.gate_pass_rate,
            "t_stat": stab.t_stat,
            "search_trials": search.n_trials,
            "optuna_trials": search.optuna_trials,
            "stopped_early": search.stopped_early,
            "best_objective": search.best_objective,
        },
        "overfitting": {
            "deflated_sharpe": dsr,
            "dsr_basis": dsr_note,
            "pbo": pbo,
            "pbo_basis": pbo_note,
        },
        "test": test_run.metrics,
        "search_at_adopted": run_portfolio(
            search_bars, setups, *stab.theta, account=account
        ).metrics,
        "baseline_test": baseline_metrics,
        "zscore_rule_test": zscore,
        "no_trades": no_trades,
        "lineage": lineage,
    }
    trades = test_run.trades.drop(columns=["entry_decided_bar", "entry_bar", "exit_bar"])
    daily = _daily_frame(test_run)
    summary_row = pd.DataFrame([{k: v for k, v in _clean(summary).items()
                                 if not isinstance(v, dict | list)}])  # fmt: skip
    files = {
        "bt_summary.parquet": _parquet(summary_row, lineage),
        "bt_trades.parquet": _parquet(trades, lineage),
        "bt_daily_equity.parquet": _parquet(daily, lineage),
        "bt_stress_results.parquet": _parquet(stress, lineage),
        "theta_search.parquet": _parquet(search.tried, lineage),
        BACKTEST_RECORD: _json(record),
    }
    # From the stored bytes, as `mlcore report` does: the rebuilt page is the same page.
    files["report.html"] = report_html(files, models.metrics)
    folder = cfg.paths.reports / "backtest" / models.version
    replace_dir(folder, files)
    bind(cfg)
    record_backtest(time.monotonic() - started)
    return BacktestReport(
        models.version, folder, folder / "report.html", decision, gates, th, test_run.metrics,
        stress, lineage, zscore, no_trades,
    )  # fmt: skip


def report_title(lineage: dict[str, Any]) -> str:
    """The report's title: the version, and a warning when the registry does not hold it."""
    title = f"Backtest of model version {lineage['model_version']}"
    if lineage.get("model_registered") is False:
        title += " (UNREGISTERED: files not checked against the registry)"
    return title


def _config_hash(cfg: AppConfig) -> str:
    h = hashlib.sha256()
    for path in cfg.config_files():
        root = cfg.base_root if path.is_relative_to(cfg.base_root) else cfg.config_root
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _daily_frame(run: PortfolioRun) -> pd.DataFrame:
    frame = pd.DataFrame({"day": run.daily.index, "equity_usd": run.daily.to_numpy()})
    frame["return"] = run.returns
    for pair_id, series in run.pair_daily.items():
        frame[f"equity_{pair_id}_usd"] = series.to_numpy()
    return frame


_LINEAGE_COLUMNS = ("model_version", "feature_schema_hash", "code_hash", "seed")
#: the summary's metrics first in this order, then any other number of the test metrics
_SUMMARY_ORDER = ("annual_return", "sharpe", "sortino", "max_drawdown", "max_drawdown_bar_level",
                  "calmar", "trades", "trades_per_year", "win_rate", "expectancy_per_trade",
                  "expectancy_per_trade_of_capital", "stop_share", "turnover_per_year",
                  "max_margin_use", "capital_usd", "final_equity_usd", "days", "years")  # fmt: skip
VERSUS_ZSCORE = ("annual_return", "sharpe", "max_drawdown", "trades", "trades_per_year",
                 "win_rate", "final_equity_usd")  # fmt: skip
_TABLES = ("bt_daily_equity", "bt_trades", "theta_search", "bt_stress_results")


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _report_inputs(
    record: dict[str, Any], tables: dict[str, pd.DataFrame], model_metrics: dict[str, Any]
) -> ReportInputs:
    """What the report shows, from the stored results only: ``backtest.json`` (``record``), the
    parquet tables without their lineage columns, and the model's metrics.json."""
    calibration = {}
    importance = {}
    for name in ("ai1", "ai2"):
        m = model_metrics.get(name, {})
        curve = m.get("oos_calibrated", {}).get("calibration_curve")
        if curve:
            calibration[name.upper()] = {
                "mean_predicted": list(curve["prob_pred"]),
                "fraction_positive": list(curve["prob_true"]),
                "count": list(curve.get("count", [])),
            }
        if m.get("feature_importance"):
            importance[name.upper()] = dict(m["feature_importance"])
    frames = {k: v.drop(columns=list(_LINEAGE_COLUMNS), errors="ignore") for k, v in tables.items()}
    daily_frame = frames["bt_daily_equity"]
    index = pd.DatetimeIndex(daily_frame["day"])
    pair_daily = {
        c[len("equity_") : -len("_usd")]: pd.Series(daily_frame[c].to_numpy(), index=index)
        for c in daily_frame.columns
        if c.startswith("equity_") and c.endswith("_usd") and c != "equity_usd"
    }
    test = record.get("test") or {}
    numbers = {k: _number(v) for k, v in test.items() if _number(v) is not None}
    summary = {k: numbers[k] for k in _SUMMARY_ORDER if k in numbers}
    summary.update({k: v for k, v in numbers.items() if k not in summary})
    overfitting, theta = record.get("overfitting") or {}, record["theta"]
    summary.update({"deflated_sharpe": _number(overfitting.get("deflated_sharpe")),
                    "pbo": _number(overfitting.get("pbo")), "theta1": theta["adopted"][0],
                    "theta2": theta["adopted"][1]})  # fmt: skip
    zscore = record.get("zscore_rule_test") or {}
    lineage = record["lineage"]
    previous = theta.get("previous")
    return ReportInputs(
        title=report_title(lineage), decision=str(record["decision"]), gates=record["gates"],
        summary={k: v for k, v in summary.items() if v is not None},
        daily_equity=pd.Series(daily_frame["equity_usd"].to_numpy(), index=index),
        pair_equity=pair_daily, trades=frames["bt_trades"], theta_grid=frames["theta_search"],
        theta_chosen=(theta["adopted"][0], theta["adopted"][1]),
        theta_previous=(previous[0], previous[1]) if previous else None,
        calibration=calibration, feature_importance=importance,
        stress=frames["bt_stress_results"], lineage={k: str(v) for k, v in lineage.items()},
        versus_zscore={k: (_number(test.get(k)), _number(zscore.get(k))) for k in VERSUS_ZSCORE}
        if zscore else {},
        no_trades=[str(v) for v in (record.get("no_trades") or {}).values()],
        daily_returns=pd.Series(daily_frame["return"].to_numpy(), index=index)
        if "return" in daily_frame.columns else None,
    )  # fmt: skip


def report_html(files: dict[str, bytes], model_metrics: dict[str, Any]) -> bytes:
    """``report.html``'s bytes from the stored results' bytes (``backtest.json`` and the
    parquet tables) and the model's metrics: the run and `mlcore report` both go through it."""
    record = json.loads(files[BACKTEST_RECORD])
    tables = {name: pd.read_parquet(io.BytesIO(files[f"{name}.parquet"])) for name in _TABLES}
    return render_report(_report_inputs(record, tables, model_metrics)).encode()


def rebuild_report(cfg: AppConfig, results: Path, model_folder: Path | None = None) -> Path:
    """Render ``report.html`` again from a backtest's stored results (no re-run), byte for byte
    the page the backtest wrote. ``model_folder`` holds the version's metrics.json (default:
    the version's folder under the models path)."""
    names = [BACKTEST_RECORD, *(f"{name}.parquet" for name in _TABLES)]
    try:
        files = {name: (results / name).read_bytes() for name in names}
        record = json.loads(files[BACKTEST_RECORD])
        folder = model_folder or cfg.paths.models / record["lineage"]["model_version"]
        metrics_path = folder / "metrics.json"
        metrics = json.loads(metrics_path.read_bytes()) if metrics_path.exists() else {}
        body = report_html(files, metrics)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{results}: not a complete backtest result ({exc!r})") from None
    write_atomic(results / "report.html", body)
    return results / "report.html"
