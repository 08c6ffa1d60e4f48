"""Bar-to-signal latency and throughput of the inference workers.

1. In-process: one worker's per-pair path (streaming features → AI1/AI2/AI3 on the compiled
   trees → decision → legs → signal record), timed per pair-bar over the last ``--bars`` bars of
   the demo pairs, replicated to 10, 50 and 500 pairs (each with its own state); plus the same
   with the signal's JSON encoding.
2. End to end through the real Redis (``REDIS_URL``, default redis://127.0.0.1:6379/0): a
   universe of N generated pairs served by worker processes under the supervisor (10 pairs a
   worker), bars published on Redis Streams, signals received by a Pub/Sub subscriber. First
   every pair's warm-up (481 bars) is pushed as fast as the workers take it: the sustained
   throughput. Then ``--ticks`` bar times are published one pair after another, and each
   signal's latency is measured from just before its pair's second leg is added to the stream
   to its arrival at the subscriber (the workers' SQLite commit and exactly-once Lua delivery
   included).

Needs a trained model version: the newest under the archive (run `make demo` first) or
``--model PATH``.

Run: .venv/bin/python benchmarks/bench_serving.py [--pairs 10,50,500] [--e2e-pairs 10,50,500]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
import yaml

from mlcore.config import load_config
from mlcore.execution import PairModels
from mlcore.features import longest_window
from mlcore.serving import (
    NO_FLAGS,
    PairRuntime,
    PairScorer,
    Supervisor,
    WorkerSpec,
    assign_pairs,
)
from mlcore.serving._setup import history, pair_setup
from mlcore.signals import encode_signal, signal_id

REPO = Path(__file__).resolve().parents[1]


# Between two bar times: long enough that one bar close is served before the next (500 pairs:
# about a second, still 60 times faster than 1-minute bars).
_GAP_S = 0.02
_GAP_PER_PAIR_S = 0.002


def _pid(i: int) -> str:
    """Pair id of generated pair i (legs BA{i}/USD and BB{i}/USD)."""
    return f"BA{i:03d}_BB{i:03d}"


def _pct(ns: list[int]) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1000.0
    return {"p50_us": round(float(np.percentile(a, 50)), 2),
            "p99_us": round(float(np.percentile(a, 99)), 2),
            "p999_us": round(float(np.percentile(a, 99.9)), 2),
            "mean_us": round(float(a.mean()), 2), "n": len(a)}  # fmt: skip


def in_process(model: Path, pair_counts: list[int], bars: int) -> dict[str, object]:
    cfg = load_config(env_name="dev")
    scorer = PairScorer(PairModels.load(model))
    templates = []
    for p in cfg.universe.pairs:
        hist, _ = history(cfg, p, None)
        templates.append((p, hist))
    out: dict[str, object] = {}
    for n in pair_counts:
        runtimes = []
        for i in range(n):
            p, hist = templates[i % len(templates)]
            setup = dataclasses.replace(pair_setup(cfg, p, (0.55, 0.5)), pair_id=_pid(i))
            rt = PairRuntime(setup, scorer, "bench")
            rt.warm(hist[:-bars], 0)
            runtimes.append((rt, hist[-bars:]))
        gc.collect()
        gc.freeze()  # as a worker does after start-up: old objects leave the collector's scans
        lat, lat_enc = [], []
        t_all = time.perf_counter_ns()
        for k in range(bars):
            ts = 1_700_000_000_000_000_000 + k * 3_600_000_000_000
            for rt, rows in runtimes:
                row = tuple(rows[k].tolist())
                t0 = time.perf_counter_ns()
                o = rt.on_bar(ts, row, ts, NO_FLAGS, {})
                t1 = time.perf_counter_ns()
                if o.signal is not None:
                    encode_signal(o.signal)
                t2 = time.perf_counter_ns()
                lat.append(t1 - t0)
                lat_enc.append(t2 - t0)
        took = (time.perf_counter_ns() - t_all) / 1e9
        out[str(n)] = {"on_bar": _pct(lat), "on_bar_and_json": _pct(lat_enc),
                       "pair_bars_per_s_one_core": round(n * bars / took)}  # fmt: skip
        print(f"in-process {n:>4} pairs: {out[str(n)]}", flush=True)
    return out


def _bars(rng: np.random.Generator, n: int) -> np.ndarray:
    """n bars (high, low, close) of two cointegrated legs: (n, 2, 3)."""
    b = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    noise = np.zeros(n)
    for t in range(1, n):
        noise[t] = 0.95 * noise[t - 1] + rng.normal(0, 0.003)
    a = 1.5 * b * np.exp(noise)
    out = np.empty((n, 2, 3))
    for j, c in enumerate((a, b)):
        span = c * np.abs(rng.normal(0, 0.002, n))
        out[:, j] = np.stack([c + span, c - span, c], axis=1)
    return out


def _config_root(tmp: Path, n: int, tag: str) -> Path:
    root = tmp / "configs"
    shutil.copytree(REPO / "configs", root)
    uni = yaml.safe_load((root / "base" / "universe.yaml").read_text())
    rules = {"tick_size": 0.01, "lot_step": 0.001, "min_lot": 0.001, "min_notional_usd": 10.0,
             "margin_rate": 0.1}  # fmt: skip
    pairs = []
    for i in range(n):
        a, b = f"BA{i:03d}/USD", f"BB{i:03d}/USD"
        for s in (a, b):
            uni["instruments"]["value"][s] = {"asset_class": "crypto", "calendar": "crypto",
                                              "quote_currency": "USD"}  # fmt: skip
            uni["trading"]["value"][s] = rules
        pairs.append({"pair_id": _pid(i), "leg_a": a, "leg_b": b})
    uni["pairs"]["value"] = pairs
    (root / "base" / "universe.yaml").write_text(yaml.safe_dump(uni))
    dev = root / "envs" / "dev" / "serving_policy.yaml"
    sv = yaml.safe_load(dev.read_text())
    base = yaml.safe_load((root / "base" / "serving_policy.yaml").read_text())
    source = {"kind": "redis", "stream_prefix": f"bench:{tag}:bars:", "block_ms": 1000}
    sv["bar_source"] = {"value": {**base["bar_source"]["value"], **source}}
    red = dict(base["redis"]["value"])
    red.update(signals_stream=f"bench:{tag}:signals", channel=f"bench:{tag}:live",
               ops_flags_key=f"bench:{tag}:flags", heartbeat_prefix=f"bench:{tag}:hb:")  # fmt: skip
    sv["redis"] = {"value": red}
    sv["workers"] = {"value": {**base["workers"]["value"], "pairs_per_worker": 10}}
    sv["freshness_budget_seconds"] = {"value": 1e9}
    dev.write_text(yaml.safe_dump(sv))
    return root


def _subscribe(redis_url: str, channel: str, ready: Any, stop: Any, out: Any) -> None:
    """Subscriber process: record when each signal id arrives (wall clock, ns)."""
    client = redis.Redis.from_url(redis_url)
    ps = client.pubsub()
    ps.subscribe(channel)
    got: dict[str, int] = {}
    ready.set()
    while not stop.is_set():
        msg = ps.get_message(timeout=0.2)
        if msg and msg["type"] == "message":
            now = time.time_ns()
            got[orjson.loads(msg["data"])["id"]] = now
    out.put(got)


class _Subscriber:
    """A separate process on the Pub/Sub channel (so that the producer's work in this process
    never delays a receipt); arrival times on the wall clock, comparable across processes."""

    def __init__(self, redis_url: str, channel: str) -> None:
        ctx = mp.get_context("spawn")
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(
            target=_subscribe, args=(redis_url, channel, self._ready, self._stop, self._out)
        )
        self._proc.start()
        self._ready.wait(60)
        time.sleep(0.2)  # the SUBSCRIBE is answered before ready is set; a margin anyway

    def close(self) -> dict[str, int]:
        """Stop and return id -> arrival (ns)."""
        self._stop.set()
        got: dict[str, int] = self._out.get(timeout=60)
        self._proc.join(10)
        return got


def _relay(
    redis_url: str, prefix: str, n: int, channel: str, version: str, ready: Any, stop: Any
) -> None:
    """The floor: a process that reads the same bar streams and, for each pair's second leg,
    publishes a bare message with the signal's id at once (no features, models or outbox)."""
    client = redis.Redis.from_url(redis_url)
    streams: dict[Any, Any] = {}
    for i in range(n):
        name = f"{prefix}BB{i:03d}/USD"
        last = client.xrevrange(name, count=1)
        streams[name] = last[0][0].decode() if last else "0-0"
    ready.set()
    while not stop.is_set():
        pipe = client.pipeline(transaction=False)
        for stream, entries in client.xread(streams, count=1000, block=200) or []:
            for entry_id, fields in entries:
                streams[stream.decode()] = entry_id.decode()
                pair = _pid(int(stream.decode()[-7:-4]))
                sid = signal_id(pair, int(fields[b"ts"]), version)
                pipe.publish(channel, orjson.dumps({"id": sid}))
        pipe.execute()


def _floor(redis_url: str, cfg: Any, producer: Any, n: int, ticks: int, first: int) -> dict:
    """Latency of the bare relay over ``ticks`` bar times from ``first``."""
    ctx = mp.get_context("spawn")
    channel = cfg.serving.redis.channel + ":relay"
    sub = _Subscriber(redis_url, channel)
    ready, stop = ctx.Event(), ctx.Event()
    relay = ctx.Process(
        target=_relay,
        args=(redis_url, cfg.serving.bar_source.stream_prefix, n, channel, producer.version,
              ready, stop),
    )  # fmt: skip
    relay.start()
    ready.wait(60)
    time.sleep(0.3)
    lat, _ = _timed_ticks(producer, sub, n, first, ticks)
    stop.set()
    relay.join(10)
    return _pct(lat)


def _timed_ticks(
    producer: _Producer, sub: _Subscriber, n: int, first: int, ticks: int
) -> tuple[list[int], int]:
    """Publish ``ticks`` bar times from ``first``, one after another (the next once the
    signals had time to arrive; no receipt is waited on); return the latencies (ns) and how
    many signals never arrived."""
    producer.sent.clear()
    for k in range(first, first + ticks):
        producer.publish(k, timed=True)
        time.sleep(_GAP_S + n * _GAP_PER_PAIR_S)
    time.sleep(1.0)
    got = sub.close()
    lat = [got[s] - t for s, t in producer.sent.items() if s in got]
    return lat, len(producer.sent) - len(lat)


def _processed(outboxes: list[Path]) -> int:
    """Pair-bars the workers have committed (signals plus refusals)."""
    total = 0
    for db in outboxes:
        if not db.exists():
            continue
        conn = sqlite3.connect(db, timeout=5)
        try:
            row = conn.execute("SELECT value FROM kv WHERE key='tally'").fetchone()
        except sqlite3.OperationalError:
            row = None
        finally:
            conn.close()
        if row:
            total += sum(json.loads(row[0]).values())
    return total


class _Producer:
    """Publishes the generated bars of every pair on its legs' streams."""

    def __init__(self, client: redis.Redis, prefix: str, data: list[np.ndarray], version: str):
        self.client, self.prefix, self.data, self.version = client, prefix, data, version
        self.sent: dict[str, int] = {}

    def publish(self, k: int, timed: bool) -> None:
        """All bars of bar time ``k`` in one pipeline, as a feed publishes a bar close; a timed
        bar's clock starts just before the pipeline is sent (so it includes sending them all)."""
        ts = 1_700_000_000_000_000_000 + k * 3_600_000_000_000
        pipe = self.client.pipeline(transaction=False)
        ids = []
        for i, bars in enumerate(self.data):
            for j, leg in enumerate(("BA", "BB")):
                h, lo, c = (float(v) for v in bars[k, j])
                symbol = f"{leg}{i:03d}/USD"
                fields = {"symbol": symbol, "ts": str(ts), "open": repr(c), "high": repr(h),
                          "low": repr(lo), "close": repr(c), "volume": "1"}  # fmt: skip
                pipe.xadd(f"{self.prefix}{symbol}", fields)  # type: ignore[arg-type]
            ids.append(signal_id(_pid(i), ts, self.version))
        t0 = time.time_ns()
        pipe.execute()
        if timed:
            self.sent.update(dict.fromkeys(ids, t0))


def end_to_end(
    model: Path, n: int, ticks: int, redis_url: str, seed: int, per_worker: int
) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    client = redis.Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        root = _config_root(tmp, n, tag)
        os.environ.update(ARCHIVE_PATH=str(tmp / "archive"), REDIS_URL=redis_url)
        cfg = load_config(root, "dev")
        warm = longest_window(cfg.features.pair) + 5
        rng = np.random.default_rng(seed)
        groups = assign_pairs([_pid(i) for i in range(n)], per_worker)
        specs = [WorkerSpec(f"w{i}", g, str(root), "dev", str(model), (0.55, 0.5), replay=True)
                 for i, g in enumerate(groups)]  # fmt: skip
        sup = Supervisor(cfg, specs)
        sub = _Subscriber(redis_url, cfg.serving.redis.channel)
        producer = _Producer(
            client, cfg.serving.bar_source.stream_prefix,
            [_bars(rng, warm + 2 * ticks) for _ in range(n)], model.name,
        )  # fmt: skip
        sup.start()
        beats = [f"{cfg.serving.redis.heartbeat_prefix}{s.worker_id}" for s in specs]
        while client.exists(*beats) < len(beats):  # every worker up and reading
            time.sleep(0.1)
        outboxes = [tmp / "archive" / "serving" / "outbox" / f"{s.worker_id}.db" for s in specs]
        # Sustained throughput: the warm-up bars, as fast as Redis takes them.
        t0 = time.perf_counter()
        for k in range(warm):
            producer.publish(k, timed=False)
        while _processed(outboxes) < n * (warm - 1) and time.perf_counter() - t0 < 900:
            time.sleep(0.2)
        took = time.perf_counter() - t0
        throughput = _processed(outboxes) / took
        print(f"e2e {n} pairs: warm-up {n * warm} pair-bars in {took:.1f} s "
              f"({throughput:,.0f} pair-bars/s)", flush=True)  # fmt: skip
        lat, missing = _timed_ticks(producer, sub, n, warm, ticks)
        sup.stop()
        # The floor of this machine, workers stopped: the next bar times relayed with no work.
        floor = _floor(redis_url, cfg, producer, n, ticks, warm + ticks)
        print(f"e2e {n} pairs: bare relay floor {floor}", flush=True)
        keys = client.keys(f"bench:{tag}:*")
        if keys:
            client.delete(*keys)
        res = {"latency": _pct(lat), "bare_relay_floor": floor,
               "missing": missing,
               "warmup_pair_bars_per_s": round(throughput), "workers": len(specs)}  # fmt: skip
        print(f"e2e {n} pairs: {res}", flush=True)
        return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="10,50,500")
    parser.add_argument("--e2e-pairs", default="10,50,500")
    parser.add_argument("--bars", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--pairs-per-worker", type=int, default=None,
        help="default: 10 (50 above 100 pairs, to fit 500 pairs in this machine's memory)",
    )  # fmt: skip
    args = parser.parse_args()
    cfg = load_config(env_name="dev")
    model = args.model or max(p for p in cfg.paths.models.glob("*") if p.is_dir())
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    result = {"model": model.name}
    if args.pairs:
        result["in_process"] = in_process(model, [int(x) for x in args.pairs.split(",")], args.bars)
    if args.e2e_pairs:
        result["end_to_end"] = {
            n: end_to_end(
                model,
                int(n),
                args.ticks,
                redis_url,
                args.seed,
                args.pairs_per_worker or (10 if int(n) <= 100 else 50),
            )
            for n in args.e2e_pairs.split(",")
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
