"""A loopback HTTP receiver playing Slack's incoming webhook (``/slack``) and PagerDuty's
Events v2 (``/pd``): it records every POST and answers from a script; a test may stop it and
start it again on the same port (the receiver "down")."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """One scripted answer; ``raw`` is written to the socket as is (not HTTP at all)."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    drip_s: float = 0.0  # seconds between the body's bytes (a slow receiver)


@dataclass(frozen=True)
class Received:
    """A POST as the receiver took it."""

    path: str
    body: dict[str, Any]
    answered: int


def _default(path: str) -> Answer:
    if path == "/pd":
        return Answer(202, b'{"status":"success","message":"Event processed"}')
    return Answer(200, b"ok")


class Receiver:
    """Start with :meth:`start`, stop with :meth:`stop` (same port each time)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Received] = []
        self.script: dict[str, deque[Answer]] = {"/slack": deque(), "/pd": deque()}
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str) -> list[dict[str, Any]]:
        """Bodies the receiver answered with a 2xx, in arrival order."""
        with self._lock:
            return [r.body for r in self.received if r.path == path and 200 <= r.answered < 300]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    queue = receiver.script.get(self.path)
                    answer = queue.popleft() if queue else _default(self.path)
                    receiver.received.append(Received(self.path, body, answer.status))
                if answer.raw is not None:
                    self.wfile.write(answer.raw)
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if not answer.drip_s:
                    self.wfile.write(answer.body)
                    return
                for i in range(len(answer.body)):
                    try:
                        self.wfile.write(answer.body[i : i + 1])
                        self.wfile.flush()
                    except OSError:  # the client hung up
                        return
                    time.sleep(answer.drip_s)

        return Handler

    def start(self) -> Receiver:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
