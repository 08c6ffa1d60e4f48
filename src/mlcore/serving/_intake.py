"""A worker's intake: every message passes the poison check, the parser and the live DQ guard
before it can reach a pair; whatever fails is counted, logged (throttled) and dead-lettered,
and reading goes on past it (spec 002 推論・signal 生成, 000 §7: invalid input, no new risk)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import redis
from sqlalchemy import Engine

from mlcore.config import TIMEFRAMES, AppConfig
from mlcore.data import LiveBarGuard
from mlcore.errors import shown
from mlcore.registry import Alerts
from mlcore.serving import _metrics as m
from mlcore.serving._bars import Bar, BarRejected, RawBar, parse_bar
from mlcore.serving._dead import (
    POISON_DEATHS,
    DeadLetter,
    DeadLetterPublisher,
    InflightMark,
    count_death,
    dead_letter,
)
from mlcore.serving._outbox import Outbox
from mlcore.serving._setup import symbol_closes

log = logging.getLogger("mlcore.serving")
LOG_EVERY_S = 10.0  # refused bars: one log line per reason this often


class Intake:
    """Checks for the messages of one worker's ``symbols`` (see the module docstring)."""

    def __init__(
        self, cfg: AppConfig, worker_id: str, root: Path, symbols: set[str],
        client: redis.Redis | None, db: Engine, tally: Counter[str],
    ) -> None:  # fmt: skip
        sv = cfg.serving
        self.cfg, self.worker_id, self.symbols, self.db, self.tally = (
            cfg,
            worker_id,
            symbols,
            db,
            tally,
        )
        self.instruments = set(cfg.universe.instruments)
        self.max_bytes = sv.bar_source.max_message_bytes
        self.guard = LiveBarGuard(cfg.pipeline.dq_thresholds, TIMEFRAMES[sv.timeframe])
        self.mark = InflightMark(root / "inflight" / f"{worker_id}.mark")
        self.publisher = (
            DeadLetterPublisher(client, sv.redis.dead_letter_stream,
                                sv.redis.dedupe_ttl_seconds, sv.redis.stream_maxlen)
            if client is not None else None
        )  # fmt: skip
        self.deaths: dict[str, int] = {}
        self.dead: list[DeadLetter] = []
        self.touched: set[str] = set()
        self._pending = True  # until the outbox's dead letters have been sent once
        self._logged: dict[str, tuple[float, int]] = {}

    # -- start-up ----------------------------------------------------------------------------
    def restore(self, kv: Mapping[str, str], outbox: Outbox, warm_until_ns: int | None) -> None:
        """The guard per symbol as committed (else warmed on the catalog), the deaths per
        message, and one death more when the last run left its mark."""
        for sym in sorted(self.symbols):
            saved = kv.get(f"guard:{sym}")
            if saved is not None:
                try:
                    self.guard.restore({sym: json.loads(saved)})
                    continue
                except ValueError as exc:
                    log.warning("%s: saved DQ guard state not usable (%s), warmed anew", sym, exc)
            closes, last = symbol_closes(self.cfg, sym, warm_until_ns)
            self.guard.warm(sym, last, closes)
        try:
            saved = json.loads(kv.get("deaths", "{}"))
            self.deaths = {str(k): int(v) for k, v in dict(saved).items()}
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            log.error("checkpoint 'deaths' not usable (%s), starting it afresh", exc)
            self.deaths = {}
        if self.mark.left_behind is not None:
            source, position, key = self.mark.left_behind
            n = count_death(self.deaths, key)
            log.error("the last run died working on %s at %s (%d time(s)%s)", source,
                      shown(position), n,
                      ", it is skipped from now on" if n >= POISON_DEATHS else "")  # fmt: skip
            outbox.commit([], {}, {"deaths": json.dumps(self.deaths)})

    # -- one message -------------------------------------------------------------------------
    def refuse(self, reason: str, detail: str = "") -> None:
        """Count a refused bar (by reason) and log it, one line per reason every LOG_EVERY_S
        at most: a flood of bad bars must not flood the log (the counter has them all)."""
        self.tally[f"refused:{reason}"] += 1
        m.BARS_REFUSED_TOTAL.labels(reason).inc()
        if not detail:
            return
        now = time.monotonic()
        last, quiet = self._logged.get(reason, (-math.inf, 0))
        if now - last >= LOG_EVERY_S:
            more = f" (and {quiet} more since)" if quiet else ""
            log.warning("bar refused (%s): %s%s", reason, detail, more)
            self._logged[reason] = (now, 0)
        else:
            self._logged[reason] = (last, quiet + 1)

    def _reject(self, raw: RawBar, key: str, reason: str, detail: str,
                bar: Bar | None = None) -> None:  # fmt: skip
        self.refuse(reason, f"{raw.source} at {shown(raw.position)}: {detail}")
        symbol, ts_ns = (bar.symbol, bar.ts_ns) if bar is not None else (None, None)
        self.dead.append(dead_letter(raw, key, reason, detail, time.time_ns(), symbol, ts_ns))

    def alert(self, code: str, message: str, details: dict[str, Any]) -> None:
        """Record an alert (the database away: the log line still says it)."""
        try:
            Alerts(self.db).raise_alert(code, message, channel="serving", details=details)
        except Exception as exc:
            log.error("alert %s not recorded (%s): %s", code, type(exc).__name__, message)

    def accept(self, raw: RawBar, key: str) -> Bar | None:
        """The bar when ``raw`` (of id ``key``, see :func:`message_id`) is one of ``symbols``
        and passes every check (the guard's state advanced); None otherwise (refused ones
        dead-lettered)."""
        deaths = self.deaths.get(key, 0)
        if deaths >= POISON_DEATHS:
            detail = f"the worker died working on it {deaths} times: skipped"
            self._reject(raw, key, "poison", detail)
            self.alert("CORE_SERVING_POISON",
                       f"{self.worker_id}: {raw.source} at {shown(raw.position)}: {detail}",
                       {"source": raw.source, "position": raw.position[:100]})  # fmt: skip
            return None
        try:
            bar = parse_bar(raw.payload, size=raw.size or None, max_bytes=self.max_bytes)
        except BarRejected as exc:
            self._reject(raw, key, exc.reason, str(exc))
            return None
        if bar.symbol not in self.symbols:
            if bar.symbol not in self.instruments:
                detail = f"{shown(bar.symbol)} is not in universe.yaml"
                self._reject(raw, key, "unknown_symbol", detail)
            return None  # another worker's symbol
        reason, detail = self.guard.check(
            bar.symbol, bar.ts_ns, bar.high, bar.low, bar.close, time.time_ns()
        )
        if reason:
            self._reject(raw, key, reason, detail, bar)
            return None
        self.touched.add(bar.symbol)
        return bar

    # -- commit and delivery -----------------------------------------------------------------
    def take(self) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
        """What the next commit keeps (the guard of the symbols changed, the dead letters), and
        forget it here."""
        state = self.guard.state()
        kv = {f"guard:{s}": orjson.dumps(state[s]).decode() for s in self.touched}
        rows = [d.row() for d in self.dead]
        self._pending = self._pending or bool(rows)
        self.dead, self.touched = [], set()
        return kv, rows

    def deliver(self, outbox: Outbox) -> None:
        """Send the dead letters Redis does not have yet (Redis away: next time)."""
        if self.publisher is None or not self._pending:
            return
        try:
            while rows := outbox.dead_letters(pending_only=True, limit=100):
                self.publisher.send(rows)
                outbox.mark_dead_delivered(rows[-1][0])
            self._pending = False
        except redis.RedisError as exc:
            log.warning("redis unavailable, dead letters kept in the outbox: %s", exc)

    def close(self) -> None:
        """A clean stop: no message is being worked on."""
        self.mark.close()
