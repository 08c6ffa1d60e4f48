"""``mlcore metrics serve``: the Prometheus endpoint of the short-lived commands, the sum of the
prometheus_client multiprocess files they left in the folder (counters and histograms add up
across runs; gauges show the newest value)."""

from __future__ import annotations

import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def multiproc_registry(folder: Path) -> CollectorRegistry:
    """A registry that reads ``folder``'s multiprocess files at every scrape."""
    folder.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return registry


def exposition(folder: Path) -> str:
    """The text a scrape of ``folder`` returns now."""
    return generate_latest(multiproc_registry(folder)).decode()


def serve_multiproc(folder: Path, port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, int]:
    """Serve ``folder`` on ``host:port`` (0: a free port) in a daemon thread; return the server
    and the port bound."""
    server, _thread = start_http_server(port, addr=host, registry=multiproc_registry(folder))
    return server, int(server.server_port)


def wait_forever(stop: threading.Event) -> None:
    """Block until ``stop`` is set (a signal handler sets it)."""
    while not stop.wait(1.0):
        pass
