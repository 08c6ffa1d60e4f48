"""``mlcore fills`` (simulate, ingest, show, report) and ``mlcore kpis`` (compute, show): the
feedback loop from served signals to live trades and live KPIs."""

from __future__ import annotations

import signal
import socket
import threading
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlcore.cli._app import command, load_config, typer_app
from mlcore.cli._audit import parse_at
from mlcore.cli._registry import open_registry
from mlcore.cli._render import fmt_or_dash as _fmt
from mlcore.cli._render import kpi_line, text
from mlcore.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mlcore.config import AppConfig
    from mlcore.feedback import IngestCounts

fills_app = typer_app("Fills from the execution side into live trades (and simulated fills).")
kpis_app = typer_app("Live KPIs per pair, model version and window (core.live_kpis).")


class Target(StrEnum):
    """Where simulated fills go."""

    FILES = "files"
    STREAM = "stream"
    BOTH = "both"


ModelOpt = Annotated[str | None, typer.Option("--model", help="One model version (default: all).")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="From this time (ISO 8601; no offset: UTC).")
]


def _engine(cfg: AppConfig) -> Engine:
    return open_registry(cfg).engine


def _redis(cfg: AppConfig) -> Any:
    import redis

    if not cfg.env.redis_url:
        raise ConfigError("FEEDBACK_REDIS_MISSING", "the fills stream needs REDIS_URL: set it")
    return redis.Redis.from_url(cfg.env.redis_url, socket_connect_timeout=5)


def _redis_error(cfg: AppConfig, exc: Exception, what: str) -> Exception:
    from mlcore._redis import redis_failure

    return redis_failure(exc, cfg.env.redis_url or "", what, prefix="FEEDBACK_REDIS",
                         retry="run the command again")  # fmt: skip


def _counts_line(where: str, c: IngestCounts) -> str:
    why = ", ".join(f"{k} {v}" for k, v in sorted(c.reasons.items()))
    return (f"{where}: {c.new} new live trades, {c.duplicate} already there, "
            f"{c.quarantined} quarantined" + (f" ({why})" if why else ""))  # fmt: skip


@command(fills_app, "simulate")
def fills_simulate(
    model: ModelOpt = None,
    since: SinceOpt = None,
    to: Annotated[Target, typer.Option("--to", help="files (the drop folder), stream, both.")] = (
        Target.FILES
    ),
) -> None:
    """Fill the served entry and exit signals (core.signals_live and _history) at their
    bar-close prices with the cost model's costs and a seeded slippage draw
    (analytics_policy.yaml fills.simulate), as result.json files in the drop folder and/or on
    the fills stream. The same signals and seed give the same fills (ids sim-{signal id})."""
    from mlcore.feedback import (
        fill_folders,
        publish_fills,
        served_signals,
        simulate_fills,
        write_fill_files,
    )

    cfg = load_config()
    start = parse_at(since) if since else None
    signals = served_signals(_engine(cfg), model_version=model, since=start)
    fills = simulate_fills(signals, cfg.costs, cfg.analytics.fills.simulate)
    if to in (Target.FILES, Target.BOTH):
        drop = fill_folders(cfg)[0]
        write_fill_files(drop, fills)
        text(f"{len(fills)} fills of {len(signals)} entry/exit signals written to {drop}")
    if to in (Target.STREAM, Target.BOTH):
        import redis

        f = cfg.analytics.fills
        try:
            publish_fills(_redis(cfg), f.stream, f.stream_maxlen, fills)
        except redis.RedisError as exc:
            raise _redis_error(cfg, exc, "adding fills to the stream") from None
        text(f"{len(fills)} fills of {len(signals)} entry/exit signals added to {f.stream}")


@command(fills_app, "ingest")
def fills_ingest(
    files: Annotated[bool, typer.Option("--files/--no-files", help="Read the drop folder.")] = True,
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Read the fills stream (REDIS_URL).")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep reading the stream until stopped (Ctrl-C).")
    ] = False,
    consumer: Annotated[
        str | None, typer.Option("--consumer", help="Consumer name (default: the host name).")
    ] = None,
) -> None:
    """Land fills in core.live_trades, once each by fill id: the drop folder's result.json
    files (then moved to done/ or quarantine/) and/or the Redis stream (consumer group,
    acknowledged after the commit). Malformed and orphan fills go to core.fills_quarantine
    with their reason."""
    from mlcore.feedback import StreamReader, ingest_folder, land_rules

    cfg = load_config()
    engine = _engine(cfg)
    if files:
        text(_counts_line("drop folder", ingest_folder(cfg, engine)))
    if stream or follow:
        import redis

        f = cfg.analytics.fills
        name = consumer or socket.gethostname()
        reader = StreamReader(
            _redis(cfg), f.stream, f.consumer_group, name, f.read_batch, f.block_ms
        )
        stop = threading.Event()
        if follow:
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            counts = reader.run(engine, land_rules(cfg), follow=follow, stop=stop)
        except KeyboardInterrupt:
            stop.set()
            return
        except redis.RedisError as exc:
            raise _redis_error(cfg, exc, "reading the fills stream") from None
        text(_counts_line(f"stream {f.stream}", counts))


@command(fills_app, "show")
def fills_show(
    model: ModelOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N of each.")] = 20,
) -> None:
    """The newest live trades and quarantined fills."""
    from mlcore.feedback import read_quarantine, read_trades

    engine = _engine(load_config())
    trades = read_trades(engine, model_version=model)[-limit:]
    text(f"live trades ({len(trades)} newest):")
    for t in trades:
        text(f"  {t.filled_at:%Y-%m-%d %H:%M:%S} {t.pair_id} {t.action} side {t.side:+d} "
             f"{t.fill_id} slippage {t.slippage_bps:.2f} bps cost {t.cost_usd:.2f} USD "
             f"(model {t.expected_cost_usd:.2f}) pnl {_fmt(t.pnl_usd, '.2f')}")  # fmt: skip
    quarantined = read_quarantine(engine, limit)
    text(f"quarantined fills ({len(quarantined)} newest):")
    for q in quarantined:
        text(f"  {q.received_at:%Y-%m-%d %H:%M:%S} {q.source} {q.location}: {q.reason}: "
             f"{q.message}")  # fmt: skip


@command(fills_app, "report")
def fills_report(model: ModelOpt = None, since: SinceOpt = None) -> None:
    """Realized slippage and costs against the cost model, per pair and in total."""
    from mlcore.feedback import read_trades, summarize_costs

    engine = _engine(load_config())
    trades = read_trades(engine, model_version=model, since=parse_at(since) if since else None)
    groups = {p: [t for t in trades if t.pair_id == p] for p in sorted({t.pair_id for t in trades})}
    for name, group in [*groups.items(), ("all", trades)]:
        s = summarize_costs(group)
        pnl = sum(t.pnl_usd for t in group if t.pnl_usd is not None)
        text(f"{name}: {s.fills} fills, slippage mean {_fmt(s.mean_slippage_bps, '.2f')} bps "
             f"p95|.| {_fmt(s.p95_abs_slippage_bps, '.2f')} bps, cost {s.cost_usd:.2f} USD vs "
             f"cost model {s.expected_cost_usd:.2f} USD (ratio {_fmt(s.cost_ratio)}), "
             f"realized P&L {pnl:.2f} USD")  # fmt: skip


@command(kpis_app, "compute")
def kpis_compute(
    model: ModelOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Windows end here (default: each version's newest bar)."),
    ] = None,
) -> None:
    """Compute the live KPIs of every served version (or one) per pair and for the book, per
    window of analytics_policy.yaml kpi.windows_days, and store them in core.live_kpis."""
    from mlcore.feedback import BOOK, compute_kpis

    cfg = load_config()
    end = parse_at(as_of) if as_of else None
    kpis = compute_kpis(cfg, _engine(cfg), datetime.now(UTC), model, end)
    text(f"{len(kpis)} KPI rows stored in core.live_kpis")
    for k in kpis:
        if k.pair_id == BOOK:
            text(kpi_line(k))


@command(kpis_app, "show")
def kpis_show(model: ModelOpt = None) -> None:
    """The newest live KPIs stored (of one version when given)."""
    from mlcore.feedback import read_kpis

    kpis = read_kpis(_engine(load_config()), model)
    if not kpis:
        text("no live KPIs stored yet: run `mlcore kpis compute`")
    for k in kpis:
        text(kpi_line(k))
