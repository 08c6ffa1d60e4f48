"""The drawdown guard of one worker: the book's drawdown over every pair's latest equity, and
what a level crossed does besides the pair's own bar (which the pair already acted on).

The book's equity at a bar time is the sum over universe.yaml's pairs of each pair's latest
equity: this worker's pairs as marked on that bar time, the others as their workers last
published them (Redis hash ``{ops_flags_key}:dd_equity``, or one JSON file per worker under
``{serving}/dd_equity/`` without Redis), a pair never published counting its capital. A worker
publishes its pairs' equity after each batch.

A crossing, for the others and for the record (each once, kept in the outbox until done):
``warn`` raises an alert and an audit row (``dd.warn``); ``halt`` adds the pair to
``halted_pairs`` (the book: ``global_halt``), ``flatten`` adds it to ``flatten_pairs`` (the
book: ``flatten_all``), each through ``update_flags`` and audited (``dd.halt``,
``dd.flatten``, actor ``system:dd``) with an alert. The guard never lifts a flag: a resume is
people's (runbook resume_policy).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.engine import Engine

from mlcore.config import TIMEFRAMES, AppConfig
from mlcore.data import write_atomic
from mlcore.errors import Severity
from mlcore.registry import Alerts
from mlcore.serving._drawdown import BookDrawdown, BookStep, DrawdownLimits, PairStep
from mlcore.serving._flags import FlagStore, OpsFlags, flags_from_doc, flags_json, update_flags

log = logging.getLogger("mlcore.serving")

ACTOR = "system:dd"
_CODES = {"warn": "CORE_DD_WARN", "halt": "CORE_DD_HALT", "flatten": "CORE_DD_FLATTEN"}
_SEVERITY = {"warn": Severity.WARNING, "halt": Severity.ERROR, "flatten": Severity.CRITICAL}


class EquityLedger:
    """Every pair's latest equity, shared by the workers (see the module docstring)."""

    def __init__(self, client: redis.Redis | None, key: str, folder: Path, worker: str) -> None:
        self.client, self.key, self.folder, self.worker = client, key, folder, worker

    def publish(self, equity: dict[str, tuple[int, float]]) -> None:
        """Set this worker's pairs' (bar time, equity)."""
        if not equity:
            return
        doc = {pid: json.dumps([ts, e]) for pid, (ts, e) in equity.items()}
        if self.client is not None:
            self.client.hset(self.key, mapping=doc)  # type: ignore[arg-type]
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.worker}.json"
            write_atomic(path, json.dumps({k: json.loads(v) for k, v in doc.items()}).encode())

    def read(self) -> dict[str, float]:
        """Every published pair's latest equity (an unreadable entry is left out)."""
        raw: dict[str, Any] = {}
        if self.client is not None:
            got = self.client.hgetall(self.key)
            raw = {k.decode(): v for k, v in got.items()}  # type: ignore[union-attr]
        elif self.folder.is_dir():
            for path in sorted(self.folder.glob("*.json")):
                try:
                    raw |= {k: json.dumps(v) for k, v in json.loads(path.read_bytes()).items()}
                except (OSError, ValueError, AttributeError):
                    log.warning("drawdown ledger %s unreadable: left out", path)
        out = {}
        for pid, value in raw.items():
            try:
                e = float(json.loads(value)[1])
            except (ValueError, TypeError, IndexError, KeyError):
                continue
            if math.isfinite(e):
                out[pid] = e
        return out


@dataclass
class DDGuard:
    """The book's drawdown and the crossings' effects for one worker."""

    worker: str
    capital: dict[str, float]  # every universe pair's capital
    book: BookDrawdown
    ledger: EquityLedger
    apply: Callable[[dict[str, Any]], None]  # one crossing's flags, audit and alert
    pending: list[dict[str, Any]] = field(default_factory=list)
    _others: dict[str, float] = field(default_factory=dict)

    def state(self) -> str:
        """The book's state and the crossings not applied yet, as JSON."""
        return json.dumps({"book": self.book.state(), "pending": self.pending})

    def restore(self, doc: Any) -> None:
        """Put back a :meth:`state` (parsed)."""
        self.book.restore(dict(doc)["book"])
        self.pending = [dict(p) for p in doc["pending"]]

    def retune(self, cfg: AppConfig) -> None:
        """Another version or config in force: its pairs' capital and book limits from the
        next bar time on, the book's peak and stops kept."""
        self.capital, self.book.limits = book_rules(cfg)

    def publish(self, equity: dict[str, tuple[int, float]]) -> None:
        """This worker's pairs' (bar time, equity), for the other workers' book."""
        try:
            self.ledger.publish(equity)
        except (redis.RedisError, OSError) as exc:
            log.warning("pair equity not published yet: %s", exc)

    def refresh(self) -> None:
        """Read the other workers' latest equity (once a batch)."""
        try:
            self._others = self.ledger.read()
        except redis.RedisError as exc:
            log.warning("drawdown ledger unreadable, the last one read is used: %s", exc)

    def at(self, ts_ns: int, own: dict[str, float]) -> BookStep:
        """The book at ``ts_ns`` with this worker's pairs' equity ``own``."""
        total = sum(own.get(p, self._others.get(p, c)) for p, c in self.capital.items())
        step = self.book.at(ts_ns, total)
        for event in step.events:
            if event != "review":
                self._crossed(event, None, ts_ns, step.drawdown, step.equity, step.peak)
        return step

    def pair(self, pair_id: str, ts_ns: int, step: PairStep) -> None:
        for event in step.events:
            if event != "review":
                self._crossed(event, pair_id, ts_ns, step.drawdown, step.equity, step.peak)

    def _crossed(
        self, event: str, pair_id: str | None, ts_ns: int, dd: float, equity: float, peak: float
    ) -> None:  # fmt: skip
        self.pending.append({
            "event": event, "pair_id": pair_id, "bar_ts_ns": ts_ns, "drawdown": round(dd, 8),
            "equity": round(equity, 6), "peak": round(peak, 6), "worker": self.worker,
        })  # fmt: skip
        scope = pair_id or "book"
        log.warning("drawdown %s: %s %.4f%% below its peak %.2f at bar %d", event, scope,
                    100 * dd, peak, ts_ns)  # fmt: skip

    def flush(self) -> None:
        """Apply the crossings not applied yet, in order; one that fails stays for the next
        batch (and across a restart: the outbox keeps ``pending``)."""
        while self.pending:
            try:
                self.apply(self.pending[0])
            except Exception as exc:  # the store or database away: retried next batch
                log.error("drawdown %s not applied yet (%s): %s", self.pending[0]["event"],
                          type(exc).__name__, str(exc)[:200])  # fmt: skip
                return
            self.pending.pop(0)
        return


def flags_change(crossing: dict[str, Any]) -> Callable[[OpsFlags], OpsFlags]:
    """What a crossing does to the flags (a warn: nothing)."""
    event, pid = crossing["event"], crossing["pair_id"]

    def change(f: OpsFlags) -> OpsFlags:
        up: dict[str, Any] = {}
        if event == "halt":
            up = {"halted_pairs": f.halted_pairs | {pid}} if pid else {"global_halt": True}
        elif event == "flatten":
            if pid:
                up = {"flatten_pairs": f.flatten_pairs | {pid}}
            else:
                up = {"flatten_all": True, "global_halt": True}
        return f.model_copy(update=up) if up else f

    return change


def crossing_alert(db: Engine, crossing: dict[str, Any]) -> None:
    """The alert record of a crossing."""
    event, scope = crossing["event"], crossing["pair_id"] or "book"
    Alerts(db).raise_alert(
        _CODES[event],
        f"drawdown {event}: {scope} {100 * crossing['drawdown']:.2f}% below its peak "
        f"{crossing['peak']:.2f} (equity {crossing['equity']:.2f})",
        channel="serving", severity=_SEVERITY[event], details=crossing,
    )  # fmt: skip


def crossing_effects(store: FlagStore, db: Engine) -> Callable[[dict[str, Any]], None]:
    """One crossing's effects: the flags (halt, flatten) through ``update_flags``, the audit
    row (``dd.<event>``, actor ``system:dd``) and the alert."""
    from mlcore.registry import ActionResult, Registry

    registry = Registry(db)

    def apply(crossing: dict[str, Any]) -> None:
        event = crossing["event"]
        before = after = None
        if event in ("halt", "flatten"):
            b, a = update_flags(
                store,
                flags_change(crossing),
                absent=lambda: flags_from_doc(
                    registry.state_at(datetime.now(UTC)).flags, "the audit trail's last flags"
                ),
            )
            before, after = json.loads(flags_json(b)), json.loads(flags_json(a))
        scope = crossing["pair_id"] or "book"
        registry.record_action(
            f"dd.{event}", actor=ACTOR, role="system",
            reason=f"{scope} drawdown {100 * crossing['drawdown']:.2f}% crossed dd_policy.yaml "
            f"{'pair' if crossing['pair_id'] else 'portfolio'} {event}",
            request_id=f"dd:{scope}:{crossing['bar_ts_ns']}:{event}",
            before=before, after=after, result=ActionResult.OK, details=crossing,
        )  # fmt: skip
        crossing_alert(db, crossing)

    return apply


def book_rules(cfg: AppConfig) -> tuple[dict[str, float], DrawdownLimits]:
    """Every universe pair's capital and the book's limits (review in ns)."""
    sv = cfg.serving
    universe = [p.pair_id for p in cfg.universe.pairs]
    share = cfg.backtest.account.capital_usd / len(universe)
    book = cfg.drawdown.portfolio
    review = cfg.backtest.execution_at(sv.timeframe).halt_review_bars
    limits = DrawdownLimits(book.warn, book.halt, book.flatten,
                            review * TIMEFRAMES[sv.timeframe] * 1_000_000_000)  # fmt: skip
    return dict.fromkeys(universe, share), limits


def dd_guard(
    cfg: AppConfig, worker: str, root: Path, client: redis.Redis | None, db: Engine, *,
    live: bool = True,
) -> DDGuard:  # fmt: skip
    """A worker's drawdown guard: the book over every universe pair (dd_policy.yaml
    ``portfolio``, reviewed after ``halt_review_bars`` as the backtest's account). Not
    ``live`` (a replay of past bars): it acts on its own bars only, its ledger and crossings
    apart from the live flags."""
    capital, limits = book_rules(cfg)
    key = cfg.serving.redis.ops_flags_key
    apply: Callable[[dict[str, Any]], None]
    if live:
        ledger = EquityLedger(client, f"{key}:dd_equity", root / "dd_equity", worker)
        store = FlagStore(client, key, root / "ops_flags.json")
        apply = crossing_effects(store, db)
    else:
        ledger = EquityLedger(None, "", root / "dd_equity_replay", worker)

        def apply(crossing: dict[str, Any]) -> None:
            log.warning("replay: drawdown %s not applied to the live flags", crossing["event"])

    return DDGuard(worker, capital, BookDrawdown(sum(capital.values()), limits), ledger, apply)
