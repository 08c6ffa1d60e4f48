"""An inference worker: one process, one thread, a handful of pairs (spec: 5-10 per process).

Each loop reads the ops flags, then a batch of bars; every symbol's bar is checked, legs are
aligned on their timestamp, and each aligned pair-bar runs features → AI1/AI2/AI3 → decision →
legs → signal. The batch's signals, the pairs' states, the bars still waiting for their other
leg, the FX quotes and the source positions are committed in one SQLite transaction; only then
are signals sent to Redis and written to ``signal.json``. How the worker applies the ops flags
is in :mod:`mlcore.serving._worker_flags`, its checkpoint in :mod:`mlcore.serving._worker_state`."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal as os_signal
import sys
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson
import redis

from mlcore._logging import inherit_third_party_verbosity
from mlcore.config import TIMEFRAMES, AppConfig
from mlcore.registry import database_url, make_engine, upgrade
from mlcore.serving import _metrics as m
from mlcore.serving._bars import Bar, FileBarSource, RawBar, RedisBarSource
from mlcore.serving._clock import ReplayClock, WallClock
from mlcore.serving._data_lag import PipelineWatch
from mlcore.serving._dd_guard import dd_guard
from mlcore.serving._dead import message_id
from mlcore.serving._delivery import (
    RedisPublisher,
    SignalFiles,
    aggregate,
    deliver,
    replay_names,
    valid_until_ns,
)
from mlcore.serving._flags import FlagReader, OpsFlags, flags_json
from mlcore.serving._frontier import (
    ahead,
    frontier_key,
    furthest,
    read_frontier,
)
from mlcore.serving._intake import Intake
from mlcore.serving._orphan import die_with_parent
from mlcore.serving._outbox import Outbox
from mlcore.serving._pair import HARD_HALTED, FxQuote, PairBar, PairRuntime
from mlcore.serving._scorer import PairScorer
from mlcore.serving._setup import pair_setup, serving_at, serving_dir
from mlcore.serving._swap import ModelUnusable, base_config, load_version, poll_target
from mlcore.serving._target import TargetWatch
from mlcore.serving._worker_flags import (
    kept_flags,
    poll_flags,
    read_flags,
    recovered,
)
from mlcore.serving._worker_state import checkpoint, heartbeat, restore
from mlcore.signals import encode_signal

log = logging.getLogger("mlcore.serving")
_RECENT_BARS = 16  # bars kept per symbol while the other leg of a pair has not arrived
COMMIT_EVERY_S = 1.0  # bars that produced nothing are committed at least this often
EXIT_MODEL_UNUSABLE = 3  # the exit code that asks the supervisor for another version
Made = list[tuple[int, dict[str, Any]]]  # (bar time, signal) of a batch


@dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor tells a worker (plain values: it crosses a process boundary)."""

    worker_id: str
    pair_ids: tuple[str, ...]
    config_root: str
    env_name: str
    model_folder: str
    theta: tuple[float, float]
    replay: bool = False
    warm_until_ns: int | None = None
    exit_when_idle_seconds: float | None = None
    root: str | None = None  # serving folder (default: {archive}/{serving_root})
    bars_file: str | None = None  # file source override (default: bar_source.file)
    aggregate: bool = True  # copy signals into core.signals_live (not for a replay)
    bar_source: str | None = None  # "redis" or "file" instead of serving_policy's kind
    model_registered: bool = True  # False: served with --unregistered, said in every signal
    # The checksums the registry recorded, checked on every load (empty: the folder's own).
    model_checksums: tuple[tuple[str, str], ...] = ()
    # A replay of past bars (`mlcore serve --replay-last`): its signals, dead letters and
    # heartbeats go to the replay names on Redis (``replay_names``), never the live ones.
    replay_redis: bool = False
    # The config version in force and the serving target's sequence number this spec is
    # (see mlcore.serving._target): a newer target.json is taken without a restart.
    config_version: str | None = None
    target_seq: int = 0
    # The timeframe served instead of serving_policy.yaml's (`mlcore serve --timeframe`).
    timeframe: str | None = None


class Worker:
    """One worker process's state and loop (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, cfg: AppConfig | None = None) -> None:
        self.spec = spec
        if cfg is None:
            cfg = base_config(spec)
        else:
            cfg = serving_at(cfg, spec.timeframe)
            if spec.replay_redis:
                serving = cfg.serving.model_copy(update={"redis": replay_names(cfg.serving.redis)})
                cfg = dataclasses.replace(cfg, serving=serving)
        self.base_cfg = cfg
        sv = cfg.serving
        self.root = Path(spec.root) if spec.root else serving_dir(cfg)
        unknown = [p for p in spec.pair_ids if p not in {q.pair_id for q in cfg.universe.pairs}]
        if unknown:
            raise ValueError(f"worker {spec.worker_id}: pairs {unknown} are not in universe.yaml")
        sums = dict(spec.model_checksums) if spec.model_checksums else None
        loaded = load_version(cfg, Path(spec.model_folder), sums, list(spec.pair_ids))
        self.cfg = cfg = loaded.cfg
        self.params_sha256 = loaded.params_sha256
        pairs = {p.pair_id: p for p in cfg.universe.pairs}
        self.scorer: PairScorer = loaded.scorer
        self.version = self.scorer.version
        # What is served now (hot swaps change it: mlcore.serving._swap).
        self.model_folder = spec.model_folder
        self.theta: tuple[float, float] = (float(spec.theta[0]), float(spec.theta[1]))
        self.config_version = spec.config_version
        self.target_seq, self.refused_seq = spec.target_seq, -1
        self.target_watch = TargetWatch(self.root)
        self.client = redis.Redis.from_url(cfg.env.redis_url) if cfg.env.redis_url else None
        self.publisher = RedisPublisher(self.client, sv.redis) if self.client else None
        self.clock = ReplayClock() if spec.replay else WallClock()
        self.outbox = Outbox(self.root / "outbox" / f"{spec.worker_id}.db")
        self.files = SignalFiles(self.root / "signals")
        self.db = make_engine(database_url(cfg))
        upgrade(self.db)  # core.signals_live at the newest schema (a no-op when it is)
        self.pairs: dict[str, PairRuntime] = {}
        self.by_symbol: dict[str, list[tuple[PairRuntime, bool]]] = {}
        for pid in spec.pair_ids:
            setup = pair_setup(cfg, pairs[pid], spec.theta, self.params_sha256)
            rt = PairRuntime(setup, self.scorer, spec.worker_id,
                             model_registered=spec.model_registered)  # fmt: skip
            self.pairs[pid] = rt
            self.by_symbol.setdefault(pairs[pid].leg_a, []).append((rt, True))
            self.by_symbol.setdefault(pairs[pid].leg_b, []).append((rt, False))
        self.fx_symbols = {c.fx_symbol for rt in self.pairs.values()
                           for c in (rt.setup.conv_a, rt.setup.conv_b) if c.fx_symbol}  # fmt: skip
        symbols = sorted(set(self.by_symbol) | self.fx_symbols)
        self.source: FileBarSource | RedisBarSource
        kind = spec.bar_source or sv.bar_source.kind
        if kind not in ("redis", "file"):
            raise ValueError(f"bar source {kind!r} is not 'redis' or 'file'")
        if kind == "redis":
            if self.client is None:
                raise ValueError("bars from Redis need REDIS_URL (serving_policy.yaml bar_source)")
            self.source = RedisBarSource(self.client, sv.bar_source.stream_prefix, symbols)
        else:
            bars = (
                Path(spec.bars_file) if spec.bars_file else cfg.paths.archive / sv.bar_source.file
            )
            self.source = FileBarSource(bars, max_bytes=sv.bar_source.max_message_bytes)
        self.recent: dict[str, dict[int, Bar]] = {s: {} for s in self.by_symbol}
        self.fx: dict[str, FxQuote] = {}
        self.tally: Tally[str] = Tally()
        self._minute: deque[tuple[float, int]] = deque()  # (when, signed entry side)
        kept = self.outbox.kv().get("flags")
        self.flags = FlagReader(
            self.client, sv.redis.ops_flags_key, self.root / "ops_flags.json",
            max_age_s=sv.flags_max_age_seconds, flags=kept_flags(kept),
        )  # fmt: skip
        self._flags_kept = kept
        self._applied_seq = -1
        self._flags_read_at = 0.0
        # Bars read again after a crash that were already sent under the flags kept then are
        # decided under those flags again (same signals, which Redis drops as sent), never under
        # flags changed meanwhile: the recovery lasts until reading passes where it was.
        self._frontier = read_frontier(self.client, sv.redis, spec.worker_id)
        self._recovering = False
        self.intake = Intake(cfg, spec.worker_id, self.root, set(symbols), self.client, self.db,
                             self.tally)  # fmt: skip
        self.guard = dd_guard(cfg, spec.worker_id, self.root, self.client, self.db,
                              live=not spec.replay_redis)  # fmt: skip
        self.lag = PipelineWatch(cfg, self.by_symbol, self.intake.alert, spec.worker_id,
                                 live=not spec.replay)  # fmt: skip
        restore(self, pairs)
        self._flags = self.flags.in_force()  # until read: those kept (none kept: none)
        if kept is not None and ahead(self._frontier, self.source.positions()):
            self._recovering = True
            log.info("re-reading bars sent before a restart under the flags kept then (%s)",
                     flags_json(self._flags))  # fmt: skip
        self._last_beat = 0.0
        self._last_aggregate = 0.0
        self.stopping = False
        self._rows: list[tuple[str, str, int, bytes, int, int | None]] = []  # not committed
        self._inference_ns: dict[str, int] = {}  # signal id → its decision's compute time
        self._touched: set[str] = set()
        self._last_commit = time.monotonic()
        self._backlog = True  # until the outbox has been checked once
        self._source_down = False

    # -- one batch -------------------------------------------------------------------------
    def _accept(self, raw: RawBar, key: str) -> Bar | None:
        """The bar if it passes the intake and is one of this worker's legs; FX quotes are
        taken here."""
        bar = self.intake.accept(raw, key)
        if bar is None:
            return None
        sym = bar.symbol
        if sym in self.fx_symbols:
            close_ns = bar.ts_ns + self.pairs_seconds * 1_000_000_000
            q = self.fx.setdefault(sym, FxQuote())
            if close_ns > q.close_ns:
                q.rate, q.close_ns = bar.close, close_ns
        if sym not in self.by_symbol:
            return None
        self.lag.bar_arrived(sym, bar.ts_ns)
        recent = self.recent[sym]
        recent[bar.ts_ns] = bar
        if len(recent) > _RECENT_BARS:
            del recent[min(recent)]
        return bar

    def _on_raw(self, raw: RawBar, ready: list[PairBar], seen: dict[str, int]) -> None:
        key = message_id(raw)
        self.intake.mark.set(raw, key)  # cleared below: a death in between is blamed on it
        self._pair_bar(raw, key, ready, seen)
        self.intake.mark.clear()

    def _pair_bar(self, raw: RawBar, key: str, ready: list[PairBar], seen: dict[str, int]) -> None:
        """The pair-bars this message completes (decided later, by bar time)."""
        bar = self._accept(raw, key)
        if bar is None:
            return
        for rt, is_a in self.by_symbol[bar.symbol]:
            other_sym = rt.setup.leg_b.symbol if is_a else rt.setup.leg_a.symbol
            other = self.recent[other_sym].get(bar.ts_ns)
            if other is None:
                continue  # the other leg's bar has not arrived yet
            pid = rt.setup.pair_id
            last = seen.get(pid, rt.last_ts_ns)
            if bar.ts_ns <= last:
                self.intake.refuse("out_of_order", f"{pid} {bar.ts_ns} <= {last}")
                continue
            seen[pid] = bar.ts_ns
            a, b = (bar, other) if is_a else (other, bar)
            values = (a.high, a.low, a.close, b.high, b.low, b.close)
            # The FX quotes as they are now: a later bar of the batch must not convert this one.
            fx = {sym: FxQuote(q.rate, q.close_ns) for sym, q in self.fx.items()}
            ready.append(PairBar(bar.ts_ns, rt, values, raw, key, fx))

    def _decide(self, ready: list[PairBar], out: list[tuple[int, dict[str, Any]]]) -> None:
        """Decide the batch's pair-bars bar time by bar time: every pair of the bar time is
        marked to market first, then the book's drawdown is taken over them, then each pair
        decides under it (the backtest's order: its account stops act on the same bar)."""
        self.guard.refresh()
        flags = self.lag.flags(self._flags, len(ready), self.tally)  # the pipeline's lag
        ready.sort(key=lambda p: p.ts_ns)  # stable: the arrival order within a bar time
        for ts, items in groupby(ready, key=lambda p: p.ts_ns):
            group = list(items)
            for p in group:
                self.intake.mark.set(p.raw, p.key)
                p.rt.move(ts, p.bar, p.fx)
            own = {pid: rt.dd.s.equity for pid, rt in self.pairs.items() if rt.dd is not None}
            control = self.guard.at(ts, own).control
            for p in group:
                self.intake.mark.set(p.raw, p.key)
                self._one(p, control, out, flags)
            self.intake.mark.clear()

    def _one(self, p: PairBar, control: float, out: Made, flags: OpsFlags) -> None:
        rt = p.rt
        close_ns = p.ts_ns + rt.setup.bar_seconds * 1_000_000_000
        t0 = time.perf_counter_ns()
        outcome = rt.on_bar(p.ts_ns, p.bar, self.clock.now_ns(close_ns), flags, p.fx, control)
        spent_ns = time.perf_counter_ns() - t0
        m.INFERENCE_LATENCY_SECONDS.observe(spent_ns / 1e9)
        pid = rt.setup.pair_id
        self._touched.add(pid)
        if outcome.dd is not None:
            self.guard.pair(pid, p.ts_ns, outcome.dd)
        if outcome.refused == HARD_HALTED:
            self.tally["held:hard_halt"] += 1  # not a refusal: the pair signals nothing
        elif outcome.signal is None:
            self.intake.refuse(outcome.refused)
        else:
            out.append((p.ts_ns, outcome.signal))
            self._inference_ns[outcome.signal["id"]] = spent_ns  # kept for the live KPIs

    @property
    def pairs_seconds(self) -> int:
        return TIMEFRAMES[self.cfg.serving.timeframe]

    def touch_all(self) -> None:
        """Every pair's state goes into the next commit (after a hot swap)."""
        self._touched |= set(self.pairs)

    def step(self) -> int:
        """Read and process one batch; return how many bar messages it held."""
        poll_target(self)  # between batches: a newer serving target is taken here
        sv = self.cfg.serving
        before = self.source.positions()
        try:
            raws = self.source.read(sv.bar_source.batch_bars, min(sv.bar_source.block_ms, 100))
        except redis.RedisError as exc:
            if not self._source_down:
                log.warning("bar source unavailable, retrying: %s", exc)
            self._source_down = True
            time.sleep(sv.bar_source.block_ms / 1000)
            raws = []
        else:
            self._source_down = False
        poll_flags(self, bool(raws), before)
        signals: list[tuple[int, dict[str, Any]]] = []
        ready: list[PairBar] = []
        seen: dict[str, int] = {}
        for raw in raws:
            self._on_raw(raw, ready, seen)
        if ready:
            self._decide(ready, signals)
        latest = self._emit(signals)
        recovered(self, bool(raws))
        if self._commit_due(bool(raws)):
            checkpoint(self)
            self.intake.deliver(self.outbox)
        if ready:
            self.guard.publish(
                {pid: (rt.last_ts_ns, rt.dd.s.equity) for pid, rt in self.pairs.items()
                 if rt.dd is not None and rt.last_ts_ns >= 0}
            )  # fmt: skip
        self.guard.flush()
        if self._backlog:
            self._deliver()
        self.files.put(latest)
        self._housekeeping()
        return len(raws)

    def _emit(self, signals: list[tuple[int, dict[str, Any]]]) -> dict[str, bytes]:
        """Encode the batch's signals, send them to Redis when nothing older waits, and keep
        them for the next commit; return each pair's newest (for signal.json)."""
        rows, latest = [], {}
        for bar_ts, s in signals:
            payload = encode_signal(s)
            rows.append((s["id"], s["pair_id"], bar_ts, payload))
            latest[s["pair_id"]] = payload
        # Sent before the commit: a crash in between re-makes them after the restart with the
        # same ids, which Redis then drops as already sent (and the outbox keeps once).
        delivered = 0
        if rows and self._expired(signals):
            self._backlog = True  # late already: the outbox's delivery archives them expired
        if rows and self.publisher is not None and not self._backlog:
            read = self.source.positions()
            if self._recovering:  # never behind what was sent before the restart
                read = furthest(self._frontier, read)
            mark = (frontier_key(self.cfg.serving.redis), self.spec.worker_id,
                    orjson.dumps(read).decode())  # fmt: skip
            try:
                self.publisher.send([(0, sid, payload) for sid, _, _, payload in rows], mark)
                delivered = 1
            except redis.RedisError as exc:
                log.warning("redis unavailable, signals kept in the outbox: %s", exc)
                self._backlog = True
        self._rows.extend((*row, delivered, self._inference_ns.pop(row[0], None)) for row in rows)
        now = time.monotonic()
        for _, s in signals:
            self.tally[f"signal:{s['metadata']['action']}"] += 1
            m.SIGNALS_TOTAL.labels(s["metadata"]["action"]).inc()
            self._minute.append((now, s["metadata"]["side"] * (s["metadata"]["action"] == "entry")))
        return latest

    def _expired(self, signals: list[tuple[int, dict[str, Any]]]) -> bool:
        now = self._now_ns()
        return now is not None and any(valid_until_ns(s) <= now for _, s in signals)

    def _now_ns(self) -> int | None:
        """Now, to hold valid_until by (None in a replay: its bars' time is compressed, so a
        restarted replay would find its own earlier signals expired)."""
        return None if self.spec.replay else time.time_ns()

    def _commit_due(self, read_any: bool) -> bool:
        since = time.monotonic() - self._last_commit
        if self.intake.dead:
            return True  # refused messages are rare: keep them at once
        if self._rows or self._touched:
            # Without Redis taking them at once, the outbox is the delivery: commit now.
            immediate = self.publisher is None or self._backlog
            return immediate or since >= self.cfg.serving.workers.checkpoint_every_seconds
        # Bars that changed no pair (one leg so far, refusals) are simply read again after a
        # crash; their offsets are still committed now and then.
        return read_any and since >= COMMIT_EVERY_S

    def _deliver(self) -> None:
        """Send the outbox's backlog in order (after Redis was away, or at start-up)."""
        if self.publisher is None:
            return
        deliver(self.outbox, self.publisher, self._now_ns())
        left = self.outbox.count("delivered")
        self._backlog = left > 0
        m.OUTBOX_PENDING.labels(self.spec.worker_id).set(left)

    def _housekeeping(self, force: bool = False) -> None:
        sv = self.cfg.serving
        now = time.monotonic()
        while self._minute and now - self._minute[0][0] > 60:
            self._minute.popleft()
        m.SIGNALS_PER_MIN.labels(self.spec.worker_id).set(len(self._minute))
        if self._minute:
            m.MODEL_ACTION_MEAN.set(sum(side for _, side in self._minute) / len(self._minute))
        if self.spec.aggregate and (
            force or now - self._last_aggregate >= sv.aggregate_every_seconds
        ):
            self._last_aggregate = now
            try:
                aggregate(self.outbox, self.db)
            except Exception as exc:  # the database may be away; the outbox keeps the rows
                why = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
                log.warning("signals not aggregated yet (%s): %s", type(exc).__name__, why)
        if force or now - self._last_beat >= sv.redis.heartbeat_seconds:
            self._last_beat = now
            read_flags(self)  # also without bars: how fresh the flags are is known
            heartbeat(self)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
        """Loop until asked to stop (or idle for ``exit_when_idle_seconds``); return counts."""
        heartbeat(self)  # up and warmed: the supervisor's start-up grace ends here
        self._last_beat = time.monotonic()
        idle_since = time.monotonic()
        limit = self.spec.exit_when_idle_seconds
        block = self.cfg.serving.bar_source.block_ms / 1000
        while not (self.stopping or should_stop()):
            n = self.step()
            now = time.monotonic()
            if n:
                idle_since = now
            elif limit is not None and now - idle_since >= limit:
                break
            elif isinstance(self.source, FileBarSource):
                time.sleep(min(block, 0.05))
        checkpoint(self)
        self._deliver()
        self.intake.deliver(self.outbox)
        self._housekeeping(force=True)
        self.files.close()
        self.intake.close()
        self.outbox.close()
        return dict(self.tally)


def worker_main(spec: WorkerSpec) -> None:
    """Entry point of a worker process: run until SIGTERM/SIGINT or the supervisor's death, then
    commit and exit."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {spec.worker_id} %(levelname)s %(message)s"
    )
    orphaned = die_with_parent()
    inherit_third_party_verbosity()  # Alembic's info lines only under `mlcore ... --verbose`
    try:
        worker = Worker(spec)
    except ModelUnusable as exc:
        log.error("model %s cannot be served: %s", spec.model_folder, exc)
        sys.exit(EXIT_MODEL_UNUSABLE)

    def _stop(_signum: int, _frame: object) -> None:
        worker.stopping = True

    os_signal.signal(os_signal.SIGTERM, _stop)
    os_signal.signal(os_signal.SIGINT, _stop)
    counts = worker.run(should_stop=orphaned)
    log.info("stopped: %s", json.dumps(counts, sort_keys=True))
