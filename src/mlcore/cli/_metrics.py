"""``mlcore metrics``: the Prometheus endpoint of the short-lived commands (ingest, backtest,
θ search, the flows), which leave their metrics in observability_policy metrics.multiproc_dir."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlcore.cli._app import command, load_config, typer_app
from mlcore.cli._render import text
from mlcore.errors import ConfigError

if TYPE_CHECKING:
    from mlcore.config import AppConfig
    from mlcore.observability import WatermarkLag

metrics_app = typer_app(
    "Prometheus metrics of the batch commands and flows: serve them, show them."
)

HostOpt = Annotated[str, typer.Option(help="Address to listen on (default loopback).")]
PortOpt = Annotated[
    int | None,
    typer.Option(help="Port (default observability_policy metrics.port; 0 takes a free one).",
                 min=0, max=65535),
]  # fmt: skip
DirOpt = Annotated[
    Path | None,
    typer.Option("--multiproc-dir", file_okay=False,
                 help="Folder of the multiprocess files (default: the policy's, in the archive)."),
]  # fmt: skip


def _watermarks(cfg: AppConfig) -> WatermarkLag:
    """The pipeline's watermark lag of every universe instrument, at each scrape."""
    from mlcore.data import read_watermark
    from mlcore.observability import WatermarkLag

    def read(symbol: str, timeframe: str) -> int | None:
        try:
            mark = read_watermark(cfg, symbol, timeframe)
        except (OSError, ValueError):
            return None  # unreadable: no sample (the worker's check counts it as late)
        return None if mark is None else int(mark.value)

    return WatermarkLag(read, sorted(cfg.universe.instruments), cfg.pipeline.timeframe_allowed)


def _folder(given: Path | None) -> Path:
    cfg = load_config()
    return (
        given if given is not None else cfg.paths.archive / cfg.observability.metrics.multiproc_dir
    )


@command(metrics_app, "serve")
def serve(host: HostOpt = "127.0.0.1", port: PortOpt = None, multiproc_dir: DirOpt = None) -> None:
    """Serve the metrics the batch commands recorded at http://HOST:PORT/metrics until stopped
    (SIGTERM or Ctrl-C)."""
    from mlcore.observability import serve_multiproc, wait_forever

    cfg = load_config()
    folder = _folder(multiproc_dir)
    chosen = cfg.observability.metrics.port if port is None else port
    try:
        server, bound = serve_multiproc(folder, chosen, host, _watermarks(cfg))
    except OSError as exc:
        raise ConfigError(
            "OBS_METRICS_PORT_UNAVAILABLE",
            f"cannot listen on {host}:{chosen} (observability_policy metrics.port / --port): "
            f"{exc.strerror or exc}",
        ) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: stop.set())
    text(f"metrics of {folder} at http://{host}:{bound}/metrics")
    sys.stdout.flush()
    wait_forever(stop)
    server.shutdown()


@command(metrics_app, "show")
def show(multiproc_dir: DirOpt = None) -> None:
    """Print what a scrape returns now (Prometheus text format)."""
    from mlcore.observability import exposition

    sys.stdout.write(exposition(_folder(multiproc_dir), _watermarks(load_config())))
