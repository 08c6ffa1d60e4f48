"""Put a serving run together: the model, the workers' pairs, an optional replay of the
catalog's last bars (the demo), the supervisor, and a summary read back from the outboxes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import redis

from mlcore.config import AppConfig
from mlcore.data import Catalog, write_atomic
from mlcore.errors import ConfigError, MlcoreError, RetryableError
from mlcore.execution import check_serving, pairs_to_serve, read_params
from mlcore.registry import database_url, make_engine, registry_for, upgrade
from mlcore.serving._bars import Bar, bar_message
from mlcore.serving._delivery import replay_names
from mlcore.serving._models import ServedModel, deployed_model, named_model, read_notice
from mlcore.serving._setup import policy_files, serving_at, serving_dir
from mlcore.serving._supervisor import Supervisor, assign_pairs
from mlcore.serving._worker import WorkerSpec

log = logging.getLogger("mlcore.serving")


@dataclass
class ServeSummary:
    """What a serving run did."""

    model: ServedModel
    workers: list[WorkerSpec]
    root: Path
    counts: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)  # workers not restarted again
    redis_stream: str | None = None  # where the signals went on Redis (None: no REDIS_URL)
    skipped: list[str] = field(default_factory=list)  # universe pairs the version lacks


def replay_bars(cfg: AppConfig, pair_ids: list[str], last: int) -> tuple[list[Bar], int]:
    """The catalog's bars of the pairs' legs (and their FX symbols) over the last ``last`` bar
    times, oldest first, and the first replayed time (workers warm on the bars before it)."""
    if last < 1:
        raise ValueError(f"--replay-last must be >= 1, got {last}")
    pairs = [p for p in cfg.universe.pairs if p.pair_id in pair_ids]
    symbols = sorted({s for p in pairs for s in (p.leg_a, p.leg_b)})
    account = cfg.backtest.account.currency
    for s in list(symbols):
        quote = cfg.universe.instruments[s].quote_currency
        for fx in (f"{quote}/{account}", f"{account}/{quote}"):
            if quote != account and fx in cfg.universe.instruments:
                symbols.append(fx)
    cat = Catalog(cfg)
    tf = cfg.serving.timeframe
    frames = {s: cat.load_bars(tf, s) for s in sorted(set(symbols))}
    times = sorted(
        set().union(*(pd.DatetimeIndex(f["ts"]).as_unit("ns").asi8 for f in frames.values()))
    )
    if not times:
        raise ValueError(f"the catalog holds no {tf} bars of {symbols}: run `mlcore ingest` first")
    start = int(times[max(0, len(times) - last)])
    bars = []
    for s, f in frames.items():
        ts = pd.DatetimeIndex(f["ts"]).as_unit("ns").asi8
        keep = ts >= start
        sub = f[keep]
        for t, o, h, lo, c, v in zip(ts[keep], sub["open"], sub["high"], sub["low"],
                                      sub["close"], sub["volume"], strict=True):  # fmt: skip
            bars.append(Bar(s, int(t), float(o), float(h), float(lo), float(c), float(v)))
    bars.sort(key=lambda b: (b.ts_ns, b.symbol))
    return bars, start


def write_bars_file(path: Path, bars: list[Bar]) -> None:
    """Bars as JSON lines (the file source's format), written atomically."""
    lines = [json.dumps(bar_message(b), sort_keys=True) for b in bars]
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def redis_refusal(exc: Exception) -> str | None:
    """Why a Redis error means REDIS_URL's settings are wrong (None: maybe transient)."""
    import redis

    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or any(
        k in text for k in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username")
    ):
        return "authentication failed"
    if "DB index" in text or "invalid DB" in text:
        return "no such database number"
    if "Protocol error" in text:
        return "the port does not speak Redis"
    return None


def check_reachable(cfg: AppConfig, kind: str, wait_s: float = 10.0) -> None:
    """Before any worker starts: the serving folder can be written, and a Redis bar source
    answers within ``wait_s`` (else :class:`RetryableError` naming it: `mlcore serve` ends
    non-zero instead of running workers that never see a bar)."""
    folder = serving_dir(cfg)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        why = f"{exc.strerror or exc}"
        raise ConfigError(
            "SERVING_FOLDER_UNUSABLE",
            f"serving folder {folder} cannot be written (ARCHIVE_PATH, serving_policy.yaml "
            f"serving_root): {why}",
        ) from None
    if kind == "file":
        bars = cfg.paths.archive / cfg.serving.bar_source.file
        if (bars.exists() or bars.is_symlink()) and not bars.is_file():
            raise ConfigError(
                "SERVING_BARS_FILE_UNUSABLE",
                f"bars file {bars} (serving_policy.yaml bar_source.file) is not a regular file "
                "(a folder, a FIFO, a dangling link): move it aside",
            )
    if kind != "redis" or not cfg.env.redis_url:
        return
    client = redis.Redis.from_url(cfg.env.redis_url, socket_connect_timeout=2, socket_timeout=2)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            kw = client.connection_pool.connection_kwargs
            where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
            refused = redis_refusal(exc)
            if refused is not None:  # waiting will not change the answer
                raise ConfigError(
                    "SERVING_SOURCE_REFUSED",
                    f"the bar source (Redis at {where}) refused REDIS_URL's settings: {refused} "
                    f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                ) from None
            if time.monotonic() >= deadline:
                raise RetryableError(
                    "SERVING_SOURCE_UNREACHABLE",
                    f"the bar source (Redis at {where}) did not answer within {wait_s:g} s: {exc}",
                ) from None
            time.sleep(0.5)


def choose_model(
    cfg: AppConfig, name: str | None, *, unregistered: bool = False, rejected: bool = False
) -> ServedModel:
    """``--model`` if given (checked against the registry; one it does not hold only with
    ``unregistered``, a rejected one only with ``rejected``), else the deployed version (with
    fallback)."""
    if name is not None:
        return named_model(cfg, registry_for(cfg), name, allow_unregistered=unregistered,
                           allow_rejected=rejected)  # fmt: skip
    return deployed_model(cfg, registry_for(cfg))


def outbox_counts(root: Path) -> Counter[str]:
    """The counts every worker committed (signals by action, bars refused by reason)."""
    total: Counter[str] = Counter()
    for db in sorted((root / "outbox").glob("*.db")):
        conn = sqlite3.connect(db)
        try:
            row = conn.execute("SELECT value FROM kv WHERE key = 'tally'").fetchone()
            n = conn.execute("SELECT count(*) FROM signals").fetchone()[0]
        finally:
            conn.close()
        if row:
            total.update(json.loads(row[0]))
        total["signals_stored"] += int(n)
    return total


class _Models:
    """The version in service as the supervisor moves it: the next deployed one when a worker
    finds it unusable; when ``deployed.json`` changes (the publish flow's deployment, an
    ops rollback of the model or of θ, a config version applied), what is in force then,
    taken by the running workers without a restart (a hot swap)."""

    def __init__(self, cfg: AppConfig, served: ServedModel, named: bool) -> None:
        self.cfg, self.served, self.named = cfg, served, named
        self.notice = serving_dir(cfg) / "deployed.json"
        self.seen = read_notice(self.notice)
        self.config_version = _config_version(self.seen)

    def unusable(self, folder: str) -> ServedModel | None:
        """The version to serve instead of the one in ``folder``, or None."""
        if self.named:
            return None  # an operator's choice is not replaced behind their back
        try:
            nxt = deployed_model(self.cfg, registry_for(self.cfg), skip={Path(folder).name})
        except ValueError as exc:
            log.error("%s", exc)
            return None
        self.served = nxt
        return nxt

    def on_tick(self, sup: Supervisor) -> None:
        current = read_notice(self.notice)
        if self.named or current is None or current == self.seen:
            return
        self.seen = current
        config = _config_version(current) or self.config_version
        try:
            nxt = deployed_model(self.cfg, registry_for(self.cfg))
        except (ValueError, MlcoreError) as exc:
            log.error("serving notice %s not followed: %s", current.get("event"), exc)
            return
        same = (nxt.version, nxt.theta, nxt.checksums) == (
            self.served.version, self.served.theta, self.served.checksums)  # fmt: skip
        if same and config == self.config_version:
            return
        log.info("%s: moving workers to %s θ %s", current.get("event"), nxt.version,
                 list(nxt.theta))  # fmt: skip
        self.served, self.config_version = nxt, config
        sup.switch_model(nxt, config)


def _config_version(notice: dict[str, Any] | None) -> str | None:
    value = (notice or {}).get("config_version")
    return value if isinstance(value, str) and value else None


def serve(
    cfg: AppConfig, *, model: str | None = None, pair_ids: list[str] | None = None,
    workers: int | None = None, replay_last: int | None = None,
    exit_when_idle_seconds: float | None = None, bars: str | None = None,
    should_stop: Callable[[], bool] = lambda: False, unregistered: bool = False,
    force_rejected: bool = False, timeframe: str | None = None,
) -> ServeSummary:  # fmt: skip
    """Run the workers until stopped (or, replaying, until the replay is done).
    ``unregistered`` lets ``model`` name a folder the registry does not hold; every signal
    then carries ``metadata.model_registered: false``; ``force_rejected`` lets it name a
    version the registry rejected; ``timeframe`` is served instead of serving_policy.yaml's
    (the catalog warm-up and replay, bar length, freshness, valid_until, drawdown review and
    the workers' checks all follow it)."""
    cfg = serving_at(cfg, timeframe)
    universe = [p.pair_id for p in cfg.universe.pairs]
    named = pair_ids
    pair_ids = pair_ids or universe
    unknown = sorted(set(pair_ids) - set(universe))
    if unknown:
        raise ValueError(f"--pairs {unknown} are not pairs of universe.yaml")
    if bars not in (None, "redis", "file"):
        raise ValueError(f"--bars {bars!r}: choose redis or file")
    if (bars or cfg.serving.bar_source.kind) == "redis" and not cfg.env.redis_url:
        raise ValueError("bars from Redis need REDIS_URL (or --bars file)")
    check_reachable(cfg, bars or cfg.serving.bar_source.kind)
    upgrade(make_engine(database_url(cfg)))  # core.signals_live at the newest schema
    served = choose_model(cfg, model, unregistered=unregistered, rejected=force_rejected)
    # A pair the version was not trained on, a timeframe it was not trained at: refused here,
    # before any worker starts (each worker checks again).
    params = read_params(served.folder, dict(served.checksums) or None)
    pair_ids, skipped = pairs_to_serve(params, universe, named)
    source, edit = (None, None) if timeframe is not None else policy_files(cfg)
    check_serving(params, pair_ids, cfg.serving.timeframe, source, edit)
    models = _Models(cfg, served, named=model is not None or bool(replay_last))
    groups = assign_pairs(pair_ids, cfg.serving.workers.pairs_per_worker, workers)
    base = WorkerSpec(
        worker_id="", pair_ids=(), config_root=str(cfg.config_root), env_name=cfg.env_name,
        exit_when_idle_seconds=exit_when_idle_seconds, root=str(serving_dir(cfg)), bar_source=bars,
        config_version=models.config_version, timeframe=timeframe,
        **models.served.spec_fields(),
    )  # fmt: skip
    if replay_last is not None:
        root = cfg.paths.archive / f"{cfg.serving.serving_root}-replay"
        shutil.rmtree(root, ignore_errors=True)  # a replay starts afresh, away from live state
        replayed, warm_until = replay_bars(cfg, pair_ids, replay_last)
        write_bars_file(root / "bars.jsonl", replayed)
        idle = exit_when_idle_seconds or 3.0
        base = replace(
            base, replay=True, warm_until_ns=warm_until, root=str(root), aggregate=False,
            bars_file=str(root / "bars.jsonl"), exit_when_idle_seconds=idle, bar_source="file",
            replay_redis=True,  # past bars' signals: never on the live stream (replay_names)
        )  # fmt: skip
    specs = [replace(base, worker_id=f"worker-{i}", pair_ids=g) for i, g in enumerate(groups)]
    sup = Supervisor(cfg, specs, on_model_unusable=models.unusable)
    if cfg.serving.metrics_port and replay_last is None:
        sup.serve_metrics(cfg.serving.metrics_port)
    sup.run(should_stop, on_tick=lambda: models.on_tick(sup))
    root = Path(str(base.root))
    names = replay_names(cfg.serving.redis) if replay_last is not None else cfg.serving.redis
    return ServeSummary(models.served, [s.spec for s in sup.slots], root,
                        outbox_counts(root), sup.events, sup.given_up,
                        names.signals_stream if cfg.env.redis_url else None,
                        skipped)  # fmt: skip
