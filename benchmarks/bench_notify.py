"""The notification outbox's cost and speed: raising an alert (with its outbox rows, one
transaction), and delivering to a loopback receiver (Slack 200, PagerDuty 202) with one and with
two notifiers at once; each row is checked delivered exactly once.

Usage: .venv/bin/python benchmarks/bench_notify.py [--alerts 500] [--url postgresql+psycopg://...]
Without --url: a SQLite file in a temporary folder (the embedded default).
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mlcore.config import load_config
from mlcore.observability import Destinations, Notifier, counts
from mlcore.registry import Alerts, make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]


def receiver() -> tuple[ThreadingHTTPServer, Counter[str]]:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = body.get("text") or body["payload"]["custom_details"]["alert_id"]
            with lock:
                seen[f"{self.path} {key}"] += 1
            answer = b"ok"
            self.send_response(202 if self.path == "/pd" else 200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def raise_many(url: str, n: int, tag: str) -> float:
    alerts = Alerts(make_engine(url))
    start = time.perf_counter()
    for i in range(n):
        severity = "critical" if i % 5 == 0 else "warning"
        alerts.raise_alert(f"BENCH_{tag}_{i}", f"alert {tag} {i}", channel="bench",
                           severity=severity, details={"pair_id": f"P{i}"})  # fmt: skip
    return time.perf_counter() - start


def deliver(url: str, notifiers: int, dest: Destinations) -> float:
    policy = load_config(ROOT / "configs", "dev").slack

    def work() -> None:
        n = Notifier(make_engine(url), policy, dest)
        while True:
            n.run_once()
            c = counts(n.engine)
            if not any(s in ("pending", "sending") for (_t, s) in c):
                return

    threads = [threading.Thread(target=work) for _ in range(notifiers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=500)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'registry.db'}"
        upgrade(make_engine(url))
        server, seen = receiver()
        port = server.server_address[1]
        dest = Destinations(f"http://127.0.0.1:{port}/slack", f"http://127.0.0.1:{port}/pd",
                            "b" * 32)  # fmt: skip
        n = args.alerts
        rows = n + (n + 4) // 5
        for notifiers in (1, 2):
            raised_s = raise_many(url, n, f"N{notifiers}")
            sent_s = deliver(url, notifiers, dest)
            kind = url.split(":")[0]
            print(f"{kind} {notifiers} notifier(s): raise_alert {1000 * raised_s / n:.2f} ms "
                  f"each (alert + outbox rows); {rows} rows delivered in {sent_s:.2f} s "
                  f"({rows / sent_s:.0f} rows/s)")  # fmt: skip
        dup = [k for k, v in seen.items() if v != 1]
        print(f"requests {sum(seen.values())}, each row once: {not dup}")
        server.shutdown()


if __name__ == "__main__":
    main()
