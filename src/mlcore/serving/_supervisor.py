"""`mlcore serve`: the supervisor of the inference workers (spec: シングルスレッド×マルチプロセス,
死活監視と自動再起動).

It chooses the model version, splits the pairs over worker processes, restarts a worker that
dies (or whose heartbeat stops), moves the workers to a newly deployed version when the publish
flow's notice changes, serves the Prometheus metrics, and archives yesterday's signals from
``core.signals_live`` into ``core.signals_history``.

SIGTERM and SIGINT (Ctrl-C) both end the watch at its next poll: every worker is asked to stop
(it commits its batch), `mlcore serve` prints its summary and exits 0. A worker also stops when
the supervisor dies, even by SIGKILL (see :func:`mlcore.serving._worker.worker_main`)."""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine

from mlcore.config import AppConfig
from mlcore.observability import NOTIFY_METRICS, deliver_pending
from mlcore.registry import Alerts, database_url, make_engine
from mlcore.serving._delivery import archive_signals
from mlcore.serving._models import ServedModel
from mlcore.serving._setup import serving_dir
from mlcore.serving._target import ServingTarget, read_target, write_target
from mlcore.serving._worker import EXIT_MODEL_UNUSABLE, WorkerSpec, worker_main
from mlcore.serving._worker_state import heartbeat_path

log = logging.getLogger("mlcore.serving")


def assign_pairs(
    pair_ids: list[str], per_worker: int, workers: int | None = None
) -> list[tuple[str, ...]]:
    """Split pairs into groups of at most ``per_worker`` (or into ``workers`` even groups)."""
    if not pair_ids:
        raise ValueError("no pairs to serve")
    n = workers if workers is not None else math.ceil(len(pair_ids) / per_worker)
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {n}")
    n = min(n, len(pair_ids))
    return [tuple(pair_ids[i::n]) for i in range(n)]


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets while inside (the handlers in place before are put
    back on leaving): the supervisor's loop ends at its next poll and stops every worker in
    order, instead of dying at once and leaving its workers running. Outside the main thread,
    where Python takes no signals, nothing is installed."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def _request(signum: int, _frame: object) -> None:
        requested.set()

    stops = (signal.SIGTERM, signal.SIGINT)
    before = {s: signal.signal(s, _request) for s in stops}
    try:
        yield requested
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


STARTUP_GRACE_S = 180.0  # a starting worker warms its pairs before its first heartbeat
NOTIFY_EVERY_S = 2.0  # how often serving delivers the notification outbox


@dataclass
class _Slot:
    spec: WorkerSpec
    process: BaseProcess | None = None
    started_at: float = 0.0  # wall clock
    restarts: list[float] = field(default_factory=list)
    given_up: bool = False


class _WorkerUp:
    """``worker_up{worker}``: 1 while the worker's process is alive."""

    def __init__(self, slots: list[_Slot]) -> None:
        self.slots = slots

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("worker_up", "1 while the inference worker runs", labels=["worker"])
        for s in self.slots:
            alive = s.process is not None and s.process.is_alive()
            g.add_metric([s.spec.worker_id], 1.0 if alive else 0.0)
        yield g


class Supervisor:
    """Start, watch and stop the workers of one serving plan."""

    def __init__(
        self,
        cfg: AppConfig,
        specs: list[WorkerSpec],
        *,
        on_model_unusable: Callable[[str], ServedModel | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.slots = [_Slot(s) for s in specs]
        self.ctx = mp.get_context("spawn")  # no fork after LightGBM/OpenMP threads
        self.on_model_unusable = on_model_unusable
        self._archived_day: str | None = None
        self._archiver: threading.Thread | None = None
        self._notifier: threading.Thread | None = None
        self._notified_at = 0.0  # monotonic
        self._notify_engine: Engine | None = None
        self.events: list[str] = []

    # -- metrics -----------------------------------------------------------------------------
    def serve_metrics(self, port: int) -> Path:
        """Expose the workers' metrics and worker_up on ``port``; return the multiprocess dir."""
        folder = serving_dir(self.cfg) / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        for f in folder.glob("*.db"):
            f.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)  # children inherit it
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
        registry.register(_WorkerUp(self.slots))
        for counter in NOTIFY_METRICS:  # the notifier runs in this process, not in a worker
            registry.register(counter)
        start_http_server(port, registry=registry)
        return folder

    # -- processes ---------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        p = self.ctx.Process(target=worker_main, args=(slot.spec,), name=slot.spec.worker_id,
                             daemon=True)  # fmt: skip
        slot.started_at = time.time()
        p.start()
        slot.process = p
        log.info("worker %s started (pid %s): %s", slot.spec.worker_id, p.pid,
                 ", ".join(slot.spec.pair_ids))  # fmt: skip

    def start(self) -> None:
        """Write the serving target the workers start with, then start every worker."""
        self._publish(self.slots[0].spec.config_version if self.slots else None)
        for slot in self.slots:
            self._start(slot)

    def _roots(self) -> list[Path]:
        return sorted({Path(s.spec.root or serving_dir(self.cfg)) for s in self.slots})

    def _publish(self, config_version: str | None) -> int:
        """Write ``target.json`` (sequence after any written before, even by an earlier run:
        a worker never takes an old file for news) from the slots' specs; every slot's spec
        then names that sequence, so a worker restarted later starts where the others are."""
        if not self.slots:
            return 0
        seq = 0
        for root in self._roots():
            try:
                old = read_target(root)
            except ValueError:
                old = None  # damaged: replaced below
            seq = max(seq, old.seq if old is not None else 0)
        seq += 1
        spec = self.slots[0].spec
        target = ServingTarget(
            seq, Path(spec.model_folder).name, spec.model_folder,
            (float(spec.theta[0]), float(spec.theta[1])), tuple(spec.model_checksums),
            spec.model_registered, config_version,
        )  # fmt: skip
        for slot in self.slots:
            slot.spec = replace(slot.spec, target_seq=seq, config_version=config_version)
        for root in self._roots():
            write_target(root, target)
        return seq

    def alive(self) -> int:
        """Workers running now."""
        return sum(1 for s in self.slots if s.process is not None and s.process.is_alive())

    def _hung(self, slot: _Slot) -> bool:
        """Alive but silent: no heartbeat for heartbeat_ttl_seconds (after its start-up)."""
        path = heartbeat_path(Path(slot.spec.root or serving_dir(self.cfg)), slot.spec.worker_id)
        now = time.time()
        try:
            beat = path.stat().st_mtime
        except FileNotFoundError:
            beat = 0.0
        if beat < slot.started_at:
            return now - slot.started_at > STARTUP_GRACE_S
        return now - beat > self.cfg.serving.redis.heartbeat_ttl_seconds

    def check(self) -> None:
        """Kill workers whose heartbeat stopped; restart those that died (within the budget)."""
        wp = self.cfg.serving.workers
        now = time.monotonic()
        for slot in self.slots:
            p = slot.process
            if p is not None and p.is_alive() and not slot.given_up and self._hung(slot):
                msg = f"worker {slot.spec.worker_id} stopped beating: killed"
                log.error(msg)
                self.events.append(msg)
                p.kill()
                p.join(10)
        for slot in self.slots:
            p = slot.process
            if p is None or p.is_alive() or slot.given_up:
                continue
            code = p.exitcode
            if code == 0:
                continue  # finished (idle exit of a replay)
            slot.restarts = [t for t in slot.restarts if now - t < 3600]
            if len(slot.restarts) >= wp.max_restarts_per_hour:
                slot.given_up = True
                msg = (f"worker {slot.spec.worker_id} died {len(slot.restarts)} times within an "
                       f"hour: not restarted again; pairs {', '.join(slot.spec.pair_ids)} "
                       "are not served")  # fmt: skip
                log.error(msg)
                self.events.append(msg)
                self._alert("CORE_SERVING_WORKER_GIVEN_UP", msg, slot)
                continue
            if code == EXIT_MODEL_UNUSABLE and self.on_model_unusable is not None:
                # The version to serve instead, or None: give up.
                nxt = self.on_model_unusable(slot.spec.model_folder)
                if nxt is None:
                    slot.given_up = True
                    msg = (f"worker {slot.spec.worker_id}: model {slot.spec.model_folder} cannot "
                           f"be served and no other version can; pairs "
                           f"{', '.join(slot.spec.pair_ids)} are not served")  # fmt: skip
                    log.error(msg)
                    self.events.append(msg)
                    self._alert("CORE_SERVING_WORKER_GIVEN_UP", msg, slot)
                    continue
                # Every worker moves (the running ones by hot swap), and the target says so:
                # the restarted worker must not take the unusable version back from the file.
                for other in self.slots:
                    other.spec = replace(other.spec, **nxt.spec_fields())
                self._publish(slot.spec.config_version)
            msg = f"worker {slot.spec.worker_id} exited with {code}: restarting"
            log.warning(msg)
            self.events.append(msg)
            time.sleep(wp.restart_delay_seconds)
            slot.restarts.append(now)
            self._start(slot)

    def _alert(self, code: str, message: str, slot: _Slot) -> None:
        """Record an alert (the database away: the log line has said it)."""
        try:
            Alerts(make_engine(database_url(self.cfg))).raise_alert(
                code, message, channel="serving",
                details={"worker": slot.spec.worker_id, "pairs": list(slot.spec.pair_ids)},
            )  # fmt: skip
        except Exception as exc:
            log.error("alert %s not recorded (%s)", code, type(exc).__name__)

    @property
    def given_up(self) -> list[str]:
        """The workers not restarted again (their pairs are not served)."""
        return [s.spec.worker_id for s in self.slots if s.given_up]

    def switch_model(self, served: ServedModel, config_version: str | None = None) -> int:
        """Move every worker to another model version, θ or config version without a restart:
        the new target goes into ``target.json``, which each running worker takes between two
        batches, keeping its pairs' state (:mod:`mlcore.serving._swap`); returns its sequence.
        A worker that finds the target unusable keeps serving and raises an alert."""
        for slot in self.slots:
            slot.spec = replace(slot.spec, **served.spec_fields())
        seq = self._publish(config_version)
        msg = (f"serving target #{seq}: {served.version} θ {list(served.theta)}"
               f"{f' config {config_version}' if config_version else ''} (hot swap)")  # fmt: skip
        log.info(msg)
        self.events.append(msg)
        return seq

    def archive(self) -> None:
        """Once a day, on a thread of its own (a database wait must never hold up the watch
        over the workers): move earlier days' signals from signals_live to signals_history."""
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        if today == self._archived_day or (self._archiver and self._archiver.is_alive()):
            return
        self._archiver = threading.Thread(
            target=self._archive, args=(today,), name="archive-signals", daemon=True
        )
        self._archiver.start()

    def _archive(self, today: str) -> None:
        start = datetime.fromisoformat(today).replace(tzinfo=UTC)
        try:
            moved = archive_signals(make_engine(database_url(self.cfg)), start)
            log.info("archived %d signals from before %s into core.signals_history", moved, today)
            self._archived_day = today
        except Exception as exc:  # the database may be away: try again next time
            why = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
            log.warning("signals not archived yet (%s): %s", type(exc).__name__, why)

    def notify(self) -> None:
        """Deliver the alerts' notifications (Slack, PagerDuty) on a thread of its own, at
        most once per NOTIFY_EVERY_S: a slow receiver never holds up the watch."""
        now = time.monotonic()
        if now - self._notified_at < NOTIFY_EVERY_S or (
            self._notifier is not None and self._notifier.is_alive()
        ):
            return
        self._notified_at = now
        self._notifier = threading.Thread(target=self._notify, name="notify", daemon=True)
        self._notifier.start()

    def _notify(self, budget_s: float = NOTIFY_EVERY_S * 10) -> None:
        if self._notify_engine is None:  # one engine (and pool) for every pass
            self._notify_engine = make_engine(database_url(self.cfg))
        deliver_pending(self._notify_engine, self.cfg.slack, self.cfg.env, budget_s)

    def _stop(self, slot: _Slot, timeout: float = 20.0) -> None:
        p = slot.process
        if p is None:
            return
        if p.is_alive():
            p.terminate()  # SIGTERM: the worker commits and exits
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()

    def stop(self) -> None:
        """Stop every worker (each finishes and commits its batch)."""
        for slot in self.slots:
            self._stop(slot)

    @staticmethod
    def _finished(slot: _Slot) -> bool:
        p = slot.process
        return p is not None and not p.is_alive() and (p.exitcode == 0 or slot.given_up)

    def run(self, should_stop: Callable[[], bool], poll_seconds: float = 0.5,
            on_tick: Callable[[], None] | None = None) -> None:  # fmt: skip
        """Watch until ``should_stop()``, SIGTERM or SIGINT, or every worker has finished
        cleanly; then stop the workers."""
        with stop_on_signals() as requested:
            self._run(lambda: requested.is_set() or should_stop(), poll_seconds, on_tick)
        if requested.is_set():
            self.events.append("stopped by a signal: every worker stopped")

    def _run(self, should_stop: Callable[[], bool], poll_seconds: float,
             on_tick: Callable[[], None] | None) -> None:  # fmt: skip
        self.start()
        try:
            while not should_stop():
                self.check()
                self.archive()
                self.notify()
                if on_tick is not None:
                    on_tick()
                if all(self._finished(s) for s in self.slots):
                    break
                time.sleep(poll_seconds)
        finally:
            self.stop()
            self._notify(budget_s=1.0)  # a last pass: what this run raised goes out now
