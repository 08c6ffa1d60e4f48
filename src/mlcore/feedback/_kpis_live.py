"""The live KPIs' I/O edge: read live trades and served signals, compute (``_kpis``), write
``core.live_kpis``; and the two typed reads the automatic rollback uses,
:func:`live_performance` and :func:`backtest_reference`.

The capital a version's returns are measured on, and the AI2 label's ``dd_recent_max`` that
defines the realized risk label, come from the version's own ``decision.json`` (the folder its
registry row names): the live KPIs are on the terms the version was backtested on."""

from __future__ import annotations

import json
import logging
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, union_all

from mlcore import observability as obs
from mlcore.config import AppConfig
from mlcore.errors import FatalError
from mlcore.execution import read_params
from mlcore.feedback._fills import FillAction
from mlcore.feedback._fills_store import read_trades
from mlcore.feedback._kpis import (
    FlagQuality,
    GateRates,
    TradeStats,
    adverse_spread_move,
    flag_quality,
    gate_rates,
    quantile,
    trade_stats,
)
from mlcore.feedback._live_trades import LiveTrade, SlippageSummary, as_utc, summarize_costs
from mlcore.registry import (
    bars_refused,
    live_kpis,
    model_registry,
    signals_history,
    signals_live,
)

log = logging.getLogger("mlcore.feedback")
BOOK = "*"  # the pair_id of the KPIs of all pairs together
_FLAT_REASONS = frozenset({"no_signal", "gates_passed", "halted"})


@dataclass(frozen=True)
class LivePerformance:
    """A version's realized performance (None where undefined: no trades, one day...)."""

    n_trades: int
    n_bars: int
    sharpe: float | None
    max_drawdown: float | None
    win_rate: float | None
    pnl_usd: float
    trades_per_year: float | None
    expectancy_usd: float | None


@dataclass(frozen=True)
class BacktestReference:
    """The deployed version's backtest (its test window), which the live KPIs are held to."""

    model_version: str
    sharpe: float | None
    max_drawdown: float | None
    win_rate: float | None
    trades_per_year: float | None
    path: str


@dataclass(frozen=True)
class KpiGaps:
    """Live minus backtest, each None when either side is."""

    sharpe: float | None
    max_drawdown: float | None
    win_rate: float | None
    trades_per_year: float | None


@dataclass(frozen=True)
class Slo:
    """Service and data-quality KPIs: how late fills come, how fresh the signals are, how long
    the workers took to decide, how many bar messages they refused (rows stored before the
    last five were kept read with their defaults)."""

    fill_latency_p50_seconds: float | None  # bar close (signal) to fill
    fill_latency_p95_seconds: float | None
    freshness_seconds: float | None  # computed_at minus the newest signal's bar close
    signals: int
    inference_p50_seconds: float | None = None  # the worker's decision time per signal
    inference_p95_seconds: float | None = None
    inference_max_seconds: float | None = None
    inference_over_slo: int = 0  # signals decided in more than kpi.inference_slo_seconds
    refused_bars: int = 0  # bar messages refused in the window (the pair's legs; the book: all)
    refused_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveKpis:
    """One row of ``core.live_kpis``: a pair (or the book, ``*``), a version, a window."""

    pair_id: str
    model_version: str
    window_days: int
    computed_at: datetime
    window_start: datetime
    trades: TradeStats
    gates: GateRates
    flags: FlagQuality
    costs: SlippageSummary
    slo: Slo
    gaps: KpiGaps | None  # None without a backtest record


@dataclass(frozen=True)
class _Version:
    capital_usd: float
    n_pairs: int
    dd_recent_max: float
    legs: dict[str, tuple[str, str]]  # pair_id → its legs' symbols


def _version(engine: Engine, model_version: str) -> _Version:
    with engine.connect() as conn:
        path = conn.execute(select(model_registry.c.params_yaml_path).where(
            model_registry.c.model_version == model_version)).scalar()  # fmt: skip
    if path is None:
        raise FatalError("FEEDBACK_VERSION_UNKNOWN",
                         f"model version {model_version} is not in the registry")  # fmt: skip
    try:
        params = read_params(Path(path).parent)
    except (OSError, ValueError) as exc:
        raise FatalError("FEEDBACK_VERSION_UNREADABLE",
                         f"{model_version}: decision.json unreadable: {exc}") from None  # fmt: skip
    rec = params.record
    return _Version(float(rec["account"]["capital_usd"]), len(params.pairs),
                    float(rec["labels"]["ai2"]["dd_recent_max"]),
                    {p.pair_id: (p.leg_a, p.leg_b) for p in params.pairs})  # fmt: skip


def _signals(engine: Engine, model_version: str, pair_id: str | None,
             since: datetime | None) -> list[Any]:  # fmt: skip
    parts = []
    for t in (signals_live, signals_history):
        q = select(t.c.signal_id, t.c.ts, t.c.pair_id, t.c.action, t.c.payload,
                   t.c.inference_seconds).where(t.c.model_version == model_version)  # fmt: skip
        if pair_id is not None:
            q = q.where(t.c.pair_id == pair_id)
        if since is not None:
            q = q.where(t.c.ts >= since)
        parts.append(q)
    with engine.connect() as conn:
        rows = list(conn.execute(union_all(*parts)).mappings())
    return sorted(rows, key=lambda r: (as_utc(r["ts"]), r["pair_id"]))


def _ns(at: datetime) -> int:
    return int(as_utc(at).timestamp() * 1_000_000) * 1000


def _stats(signals: list[Any], trades: list[LiveTrade], capital: float) -> TradeStats:
    closed = [t for t in trades if t.action == FillAction.EXIT and t.pnl_usd is not None]
    return trade_stats([_ns(r["ts"]) for r in signals], [_ns(t.filled_at) for t in closed],
                       [t.pnl_usd or 0.0 for t in closed], capital)  # fmt: skip


def live_performance(
    engine: Engine, *, model_version: str, pair_id: str | None, since: datetime | None
) -> LivePerformance:
    """Realized performance of ``model_version`` (one pair, or the book when None) from
    ``since`` (all when None): closed live trades on the bars it served, with the backtest's
    Sharpe and MaxDD definitions on the capital of its ``decision.json``."""
    v = _version(engine, model_version)
    capital = v.capital_usd / v.n_pairs if pair_id is not None else v.capital_usd
    trades = read_trades(engine, model_version=model_version, pair_id=pair_id, since=since)
    s = _stats(_signals(engine, model_version, pair_id, since), trades, capital)
    return LivePerformance(s.n_trades, s.n_bars, s.sharpe, s.max_drawdown, s.win_rate,
                           s.pnl_usd, s.trades_per_year, s.expectancy_usd)  # fmt: skip


def backtest_reference(cfg: AppConfig, model_version: str) -> BacktestReference:
    """The test-window metrics of ``model_version``'s ``backtest.json`` (reports/backtest/
    {version}/, else the version's model folder); FatalError FEEDBACK_BACKTEST_MISSING."""
    for path in (cfg.paths.reports / "backtest" / model_version / "backtest.json",
                 cfg.paths.models / model_version / "backtest.json"):  # fmt: skip
        try:
            test = json.loads(path.read_bytes()).get("test") or {}
        except (OSError, ValueError, AttributeError):
            continue
        num = {k: test.get(k) if isinstance(test.get(k), int | float) else None
               for k in ("sharpe", "max_drawdown", "win_rate", "trades_per_year")}  # fmt: skip
        return BacktestReference(model_version, path=str(path), **num)
    raise FatalError("FEEDBACK_BACKTEST_MISSING",
                     f"no readable backtest.json for model version {model_version}")  # fmt: skip


def _gap(live: float | None, ref: float | None) -> float | None:
    return None if live is None or ref is None else live - ref


def _gates(signals: list[Any]) -> GateRates:
    prob, risk, t1, t2 = [], [], [], []
    for r in signals:
        p = r["payload"] or {}
        meta = p.get("metadata", {})
        entry_z = meta.get("core_policy", {}).get("entry_z")
        if (p.get("return_prob") is None or entry_z is None or meta.get("reason") not in
                _FLAT_REASONS or abs(p.get("z_score", 0.0)) < entry_z):  # fmt: skip
            continue
        prob.append(p["return_prob"])
        risk.append(p["risk_score"])
        t1.append(p["theta1"])
        t2.append(p["theta2"])
    return gate_rates(prob, risk, t1, t2)


def _flags(signals: list[Any], trades: list[LiveTrade], dd_max: float) -> FlagQuality:
    """Each closed trade: flagged when any of its pair's signals from its entry's bar to its
    exit's bar had risk_flag 1; adverse when the spread moved against it by > dd_max."""
    entries = {t.fill_id: t for t in trades if t.action == FillAction.ENTRY}
    by_id = {r["signal_id"]: r for r in signals}
    flags: dict[str, tuple[list[datetime], list[int]]] = {}  # pair: (bar times, cumulative flags)
    for r in signals:  # signals come sorted by time
        times, cum = flags.setdefault(r["pair_id"], ([], [0]))
        times.append(as_utc(r["ts"]))
        cum.append(cum[-1] + int((r["payload"] or {}).get("risk_flag") == 1))
    flagged, adverse = [], []
    for x in trades:
        e = entries.get(x.entry_fill_id or "")
        if x.pnl_usd is None or e is None or e.signal_id not in by_id:
            continue
        beta = float(by_id[e.signal_id]["payload"]["metadata"]["beta"])
        move = adverse_spread_move(e.side, beta, (e.legs[0].price, e.legs[1].price),
                                   (x.legs[0].price, x.legs[1].price))  # fmt: skip
        times, cum = flags.get(x.pair_id, ([], [0]))
        lo = bisect_left(times, as_utc(e.signal_ts))
        hi = bisect_right(times, as_utc(x.signal_ts))
        flagged.append(cum[hi] - cum[lo] > 0)
        adverse.append(move > dd_max)
    return flag_quality(flagged, adverse)


def _refused(engine: Engine, symbols: tuple[str, ...] | None, start: datetime,
             end: datetime) -> dict[str, int]:  # fmt: skip
    """Bar messages refused in [start, end] by reason: placed at their bar time where the
    message said it, else when refused; only those of ``symbols`` (None: every one)."""
    t = bars_refused
    at = func.coalesce(t.c.bar_ts, t.c.refused_at)
    q = select(t.c.reason, func.count()).where(at >= start, at <= end).group_by(t.c.reason)
    if symbols is not None:
        q = q.where(t.c.symbol.in_(symbols))
    with engine.connect() as conn:
        return {str(r): int(n) for r, n in conn.execute(q)}


def _slo(signals: list[Any], trades: list[LiveTrade], now: datetime, slo_s: float,
         refused: dict[str, int]) -> Slo:  # fmt: skip
    lat = [(t.filled_at - t.signal_ts).total_seconds() for t in trades]
    newest = max((as_utc(r["ts"]) for r in signals), default=None)
    spent = [float(r["inference_seconds"]) for r in signals if r["inference_seconds"] is not None]
    return Slo(quantile(lat, 0.5), quantile(lat, 0.95),
               (now - newest).total_seconds() if newest else None, len(signals),
               quantile(spent, 0.5), quantile(spent, 0.95), max(spent, default=None),
               sum(x > slo_s for x in spent), sum(refused.values()),
               dict(sorted(refused.items())))  # fmt: skip


def window_kpis(
    engine: Engine, model_version: str, pair_id: str, window_days: int, now: datetime,
    ref: BacktestReference | None, v: _Version, end: datetime, slo_s: float,
) -> LiveKpis:  # fmt: skip
    """The KPIs of one version, pair (or ``*``) and window ending ``end``, computed ``now``;
    ``slo_s``: the inference time a signal should be decided within."""
    start = end - timedelta(days=window_days)
    pid = None if pair_id == BOOK else pair_id
    capital = v.capital_usd / v.n_pairs if pid is not None else v.capital_usd
    signals = _signals(engine, model_version, pid, start)
    trades = read_trades(engine, model_version=model_version, pair_id=pid, since=start)
    stats = _stats(signals, trades, capital)
    gaps = None if ref is None else KpiGaps(
        _gap(stats.sharpe, ref.sharpe), _gap(stats.max_drawdown, ref.max_drawdown),
        _gap(stats.win_rate, ref.win_rate), _gap(stats.trades_per_year, ref.trades_per_year),
    )  # fmt: skip
    return LiveKpis(
        pair_id=pair_id, model_version=model_version, window_days=window_days,
        computed_at=now, window_start=start, trades=stats, gates=_gates(signals),
        flags=_flags(signals, trades, v.dd_recent_max), costs=summarize_costs(trades),
        slo=_slo(signals, trades, now, slo_s,
                 _refused(engine, None if pid is None else v.legs.get(pid, ()), start, end)),
        gaps=gaps,
    )  # fmt: skip


def served_versions(engine: Engine) -> list[str]:
    """The model versions that served signals."""
    with engine.connect() as conn:
        got = {r[0] for t in (signals_live, signals_history)
               for r in conn.execute(select(t.c.model_version).distinct())}  # fmt: skip
    return sorted(got)


def compute_kpis(
    cfg: AppConfig, engine: Engine, now: datetime, model_version: str | None = None,
    as_of: datetime | None = None,
) -> list[LiveKpis]:  # fmt: skip
    """KPIs of every served version (or one), per pair and the book, per window of
    ``analytics.kpi.windows_days`` ending ``as_of`` (default: the version's newest served
    bar, which is now in live serving and the replayed time in a replay); written to
    ``core.live_kpis`` and returned."""
    out = []
    for version in [model_version] if model_version else served_versions(engine):
        try:
            v = _version(engine, version)
        except FatalError as exc:
            if model_version:
                raise
            log.warning("%s: no live KPIs for this version", exc)  # served unregistered
            continue
        try:
            ref: BacktestReference | None = backtest_reference(cfg, version)
        except FatalError:
            ref = None
        served = _signals(engine, version, None, None)
        pairs = sorted({r["pair_id"] for r in served})
        end = as_of or max((as_utc(r["ts"]) for r in served), default=now)
        for days in cfg.analytics.kpi.windows_days:
            out += [window_kpis(engine, version, p, days, now, ref, v, end,
                                cfg.analytics.kpi.inference_slo_seconds)
                    for p in [*pairs, BOOK]]  # fmt: skip
    with engine.begin() as conn:
        for k in out:
            conn.execute(insert(live_kpis).values(
                pair_id=k.pair_id, model_version=k.model_version, window_days=k.window_days,
                computed_at=k.computed_at, window_start=k.window_start,
                n_trades=k.trades.n_trades, n_bars=k.trades.n_bars, kpis=_json(k),
            ))  # fmt: skip
    _gauges(cfg, out)
    return out


def _gauges(cfg: AppConfig, kpis: list[LiveKpis]) -> None:
    """The shortest window's KPIs of each pair as Prometheus gauges (``core_live_*{pair}``;
    the book and longer windows stay in ``core.live_kpis``)."""
    if not kpis:
        return
    shortest = min(k.window_days for k in kpis)
    nan = float("nan")
    rows = [obs.LiveKpis(k.pair_id, _or(k.trades.sharpe, nan), _or(k.trades.win_rate, nan),
                         _or(k.trades.max_drawdown, nan), k.trades.pnl_usd, k.trades.n_trades)
            for k in kpis if k.window_days == shortest and k.pair_id != BOOK]  # fmt: skip
    obs.bind(cfg)
    obs.record_kpis(cfg, rows)


def _or(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def _json(k: LiveKpis) -> dict[str, Any]:
    doc = asdict(k)
    for key in ("pair_id", "model_version", "window_days", "computed_at", "window_start"):
        doc.pop(key)
    return doc


def read_kpis(engine: Engine, model_version: str | None = None) -> list[LiveKpis]:
    """The newest computation's KPIs (of one version when given)."""
    t = live_kpis
    q = select(t)
    if model_version is not None:
        q = q.where(t.c.model_version == model_version)
    with engine.connect() as conn:
        rows = list(conn.execute(q).mappings())
    if not rows:
        return []
    newest = max(as_utc(r["computed_at"]) for r in rows)
    return [_from_row(r) for r in rows if as_utc(r["computed_at"]) == newest]


def _from_row(r: Any) -> LiveKpis:
    d = r["kpis"]
    return LiveKpis(
        pair_id=r["pair_id"], model_version=r["model_version"], window_days=r["window_days"],
        computed_at=as_utc(r["computed_at"]), window_start=as_utc(r["window_start"]),
        trades=TradeStats(**d["trades"]), gates=GateRates(**d["gates"]),
        flags=FlagQuality(**d["flags"]), costs=SlippageSummary(**d["costs"]),
        slo=Slo(**d["slo"]), gaps=KpiGaps(**d["gaps"]) if d["gaps"] else None,
    )  # fmt: skip
