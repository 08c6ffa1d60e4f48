"""``mlcore metrics serve``: the Prometheus endpoint of the short-lived commands, the sum of the
prometheus_client multiprocess files they left in the folder (counters and histograms add up
across runs; gauges show the newest value)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from mlcore.config import TIMEFRAMES
from mlcore.observability._freshness import watermark_lag_seconds

#: The newest stored bar time (ns) of (symbol, timeframe), None before the first ingest.
ReadWatermark = Callable[[str, str], int | None]


class WatermarkLag(Collector):
    """``data_watermark_lag_seconds{symbol, timeframe}`` computed at each scrape from the
    pipeline's watermarks: a lag that grows while nothing ingests (a gauge an ingest set would
    stand still at its last value when the ingests stop)."""

    def __init__(self, read: ReadWatermark, symbols: Sequence[str], timeframes: Sequence[str]):
        self.read, self.symbols, self.timeframes = read, list(symbols), list(timeframes)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "data_watermark_lag_seconds",
            "Now minus the close of the newest ingested bar (the pipeline's watermark)",
            labels=["symbol", "timeframe"],
        )
        now = time.time_ns()
        for tf in self.timeframes:
            for sym in self.symbols:
                last = self.read(sym, tf)
                if last is not None:
                    g.add_metric([sym, tf], watermark_lag_seconds(last, TIMEFRAMES[tf], now))
        yield g


def multiproc_registry(folder: Path, *extra: Collector) -> CollectorRegistry:
    """A registry that reads ``folder``'s multiprocess files (and ``extra``) at every scrape."""
    folder.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    for collector in extra:
        registry.register(collector)
    return registry


def exposition(folder: Path, *extra: Collector) -> str:
    """The text a scrape of ``folder`` returns now."""
    return generate_latest(multiproc_registry(folder, *extra)).decode()


def serve_multiproc(
    folder: Path, port: int, host: str = "127.0.0.1", *extra: Collector
) -> tuple[WSGIServer, int]:
    """Serve ``folder`` (and ``extra``) on ``host:port`` (0: a free port) in a daemon thread;
    return the server and the port bound."""
    registry = multiproc_registry(folder, *extra)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_port)


def wait_forever(stop: threading.Event) -> None:
    """Block until ``stop`` is set (a signal handler sets it)."""
    while not stop.wait(1.0):
        pass
