"""A scriptable loopback HTTP server answering like TwelveData's ``/time_series``."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

API_KEY = "test-key-0123456789"
NO_DATA = {
    "code": 400,
    "message": "No data is available on the specified dates. Try setting different dates.",
    "status": "error",
}


@dataclass
class Reply:
    """One scripted answer. With neither ``json_body`` nor ``raw`` the data set is served."""

    status: int = 200
    json_body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class Seen:
    """A request as the server received it."""

    path: str
    params: dict[str, str]
    authorization: str | None
    at_s: float


Script = Reply | Callable[[Seen], Reply]


def make_values(
    first: datetime,
    count: int,
    step: timedelta = timedelta(hours=1),
    *,
    volume: bool = True,
    daily: bool = False,
) -> list[dict[str, str]]:
    """Return ``count`` consecutive bars as TwelveData strings (valid OHLC)."""
    fmt = "%Y-%m-%d" if daily else "%Y-%m-%d %H:%M:%S"
    values = []
    for i in range(count):
        base = 2000.0 + (i % 97) * 0.5
        row = {
            "datetime": (first + i * step).strftime(fmt),
            "open": f"{base:.2f}",
            "high": f"{base + 2:.2f}",
            "low": f"{base - 2:.2f}",
            "close": f"{base + 1:.2f}",
        }
        if volume:
            row["volume"] = str(100 + i % 13)
        values.append(row)
    return values


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class FakeTwelveData:
    """Serve ``values`` like TwelveData; scripted replies are consumed first, one per request.

    ``keep`` says which bars survive when a window holds more than ``outputsize``: TwelveData
    keeps the ``latest`` (nearest ``end_date``); ``earliest`` models a server that keeps the
    oldest.
    """

    def __init__(
        self,
        values: list[dict[str, str]] | None = None,
        *,
        keep: Literal["latest", "earliest"] = "latest",
        api_key: str = API_KEY,
    ) -> None:
        self.values = values or []
        self.keep = keep
        self.api_key = api_key
        self.requests: list[Seen] = []
        self._script: deque[Script] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeTwelveData:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def script(self, *replies: Script) -> None:
        with self._lock:
            self._script.extend(replies)

    def _next(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            item = self._script.popleft() if self._script else Reply()
        return item(seen) if callable(item) else item

    def serve_data(self, seen: Seen) -> tuple[int, Any]:
        """Answer from the data set as TwelveData would (auth, window, outputsize, order)."""
        if seen.authorization != f"apikey {self.api_key}":
            return 401, {
                "code": 401,
                "message": "**apikey** parameter is incorrect or not specified.",
                "status": "error",
            }
        lo, hi = _when(seen.params["start_date"]), _when(seen.params["end_date"])
        rows = [v for v in self.values if lo <= _when(v["datetime"]) <= hi]
        size = int(seen.params.get("outputsize", "30"))
        rows = rows[-size:] if self.keep == "latest" else rows[:size]
        if seen.params.get("order", "DESC").upper() != "ASC":
            rows.reverse()
        if not rows:
            return 400, NO_DATA
        meta = {"symbol": seen.params["symbol"], "interval": seen.params["interval"]}
        return 200, {"meta": meta, "values": rows, "status": "ok"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                seen = Seen(url.path, params, self.headers.get("Authorization"), time.monotonic())
                reply = fake._next(seen)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                status, body = reply.status, reply.raw
                if body is None and reply.json_body is None:
                    status, payload = fake.serve_data(seen)
                    body = json.dumps(payload).encode()
                elif body is None:
                    body = json.dumps(reply.json_body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test); nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def closed_port_url() -> str:
    """Return a loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
