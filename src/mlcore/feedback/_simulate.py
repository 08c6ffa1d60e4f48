"""Simulated fills of served signals, so the loop can run without an executor: each entry and
exit signal is filled ``delay_seconds`` after its bar close, at the signal's own bar-close price
(``notional_usd / units`` of each leg) moved against the order by a slippage in bps drawn as
the cost model's mean (``slippage_bps`` times the time-of-day factor) plus a normal draw of sd
``slippage_sd_bps``, and charged the cost model's commission and half spread as its fee.

The draw of a leg is seeded by (seed, signal id, leg), so the same signals and seed give the
same fills whatever else is simulated with them; the fill id is ``sim-{signal_id}``, so a
simulation run twice lands once."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import redis
from sqlalchemy import Engine, select

from mlcore.config import AppConfig, CostTable, FillsSimulatePolicy
from mlcore.data import write_atomic
from mlcore.errors import FatalError
from mlcore.execution import leg_costs, slippage_factor_at
from mlcore.feedback._fills import Fill, FillAction, FillLeg, encode_fill
from mlcore.feedback._fills_ingest import fill_folders, ingest_folder
from mlcore.feedback._fills_store import read_quarantine, read_trades
from mlcore.feedback._kpis_live import BOOK, LiveKpis, compute_kpis
from mlcore.feedback._live_trades import SignalRef, signal_ref
from mlcore.registry import signals_history, signals_live

_BPS = 1e-4
_SWAP_IRRELEVANT_BAR_SECONDS = 86_400  # a fill pays no swap: any bar length gives its rates


def simulate_fill(signal: SignalRef, costs: CostTable, policy: FillsSimulatePolicy) -> Fill | None:
    """The simulated fill of one signal (None for a hold or a signal without units)."""
    if signal.action not in ("entry", "exit") or not all(g.units > 0 for g in signal.legs):
        return None
    close_ns = int(signal.ts.timestamp() * 1e9)
    factor = slippage_factor_at(costs, close_ns)
    legs = []
    for i, leg in enumerate(signal.legs):
        rates = leg_costs(costs, leg.symbol, _SWAP_IRRELEVANT_BAR_SECONDS)
        rng = np.random.default_rng([policy.seed, int(signal.signal_id[:15], 16), i])
        slip_bps = rates.slippage * factor / _BPS + policy.slippage_sd_bps * rng.standard_normal()
        sign = 1 if leg.side == "BUY" else -1
        ref = leg.price_usd
        price = ref * (1.0 + sign * slip_bps * _BPS)
        legs.append(FillLeg(leg.symbol, leg.side, leg.units, price, leg.units * ref * rates.fixed))
    return Fill(
        fill_id=f"sim-{signal.signal_id}", signal_id=signal.signal_id, pair_id=signal.pair_id,
        model_version=signal.model_version, action=FillAction(signal.action), side=signal.side,
        filled_at=signal.ts + timedelta(seconds=policy.delay_seconds), legs=(legs[0], legs[1]),
    )  # fmt: skip


def simulate_fills(
    signals: list[SignalRef], costs: CostTable, policy: FillsSimulatePolicy
) -> list[Fill]:
    """The simulated fills of ``signals`` (holds skipped), in the signals' order."""
    return [f for s in signals if (f := simulate_fill(s, costs, policy)) is not None]


def served_signals(
    engine: Engine, *, model_version: str | None = None, since: datetime | None = None,
    actions: tuple[str, ...] = ("entry", "exit"),
) -> list[SignalRef]:  # fmt: skip
    """Signals of ``core.signals_live`` and ``core.signals_history`` (entries and exits by
    default), oldest first."""
    out: list[Any] = []
    with engine.connect() as conn:
        for table in (signals_history, signals_live):
            query = select(table).where(table.c.action.in_(actions))
            if model_version is not None:
                query = query.where(table.c.model_version == model_version)
            if since is not None:
                query = query.where(table.c.ts >= since)
            out += [signal_ref(r) for r in conn.execute(query).mappings()]
    return sorted(out, key=lambda s: (s.ts, s.pair_id, s.signal_id))


def write_fill_files(drop: Any, fills: list[Fill]) -> int:
    """``{drop}/{pair_id}/{fill_id}/result.json`` per fill, each written atomically, as an
    executor would drop them; returns how many were written."""
    for fill in fills:
        write_atomic(drop / fill.pair_id / fill.fill_id / "result.json", encode_fill(fill) + b"\n")
    return len(fills)


def publish_fills(client: redis.Redis, stream: str, maxlen: int, fills: list[Fill]) -> int:
    """Add each fill to the stream (field ``fill``: its JSON); returns how many."""
    pipe = client.pipeline(transaction=False)
    for fill in fills:
        pipe.xadd(stream, {"fill": encode_fill(fill)}, maxlen=maxlen, approximate=True)
    pipe.execute()
    return len(fills)


def fills_json(fills: list[Fill]) -> str:
    """The fills as one JSON array (for --print)."""
    return json.dumps([json.loads(encode_fill(f)) for f in fills], indent=1)


@dataclass
class LoopSummary:
    """The feedback loop run once on the replay's signals."""

    signals: int  # entry and exit signals served
    fills: int  # simulated
    new_trades: int
    live_trades: int
    closed_trades: int
    quarantined: int
    pnl_usd: float
    kpis: list[LiveKpis]
    kpis_skipped: str  # why no KPIs ("" when computed)
    seconds: float


def loop_once(cfg: AppConfig, engine: Engine) -> LoopSummary:
    """The loop once on what was served: simulate fills of the served entry and exit signals
    into the drop folder, ingest them into core.live_trades, compute the live KPIs."""
    t0 = time.perf_counter()
    signals = served_signals(engine)
    fills = simulate_fills(signals, cfg.costs, cfg.analytics.fills.simulate)
    write_fill_files(fill_folders(cfg)[0], fills)
    counts = ingest_folder(cfg, engine)
    trades = read_trades(engine)
    kpis: list[LiveKpis] = []
    skipped = ""
    try:
        kpis = compute_kpis(cfg, engine, datetime.now(UTC))
    except FatalError as exc:  # a replayed version the registry cannot vouch for
        skipped = str(exc)
    closed = [t.pnl_usd for t in trades if t.pnl_usd is not None]
    return LoopSummary(
        signals=len(signals), fills=len(fills), new_trades=counts.new, live_trades=len(trades),
        closed_trades=len(closed), quarantined=len(read_quarantine(engine)),
        pnl_usd=float(sum(closed)), kpis=[k for k in kpis if k.pair_id == BOOK],
        kpis_skipped=skipped, seconds=time.perf_counter() - t0,
    )  # fmt: skip


def loop_dict(f: LoopSummary) -> dict[str, Any]:
    """The feedback loop's outcome as JSON-able data (the book's KPIs per window)."""
    doc = {k: v for k, v in asdict(f).items() if k not in ("kpis", "seconds")}
    doc["kpis_book"] = [
        {"model_version": k.model_version, "window_days": k.window_days,
         "trades": asdict(k.trades), "gates": asdict(k.gates)}
        for k in f.kpis
    ]  # fmt: skip
    return doc
