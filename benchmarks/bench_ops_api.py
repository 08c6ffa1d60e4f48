"""Latency of the Ops API's /ops/* routes, end to end: ``mlcore api serve`` started as a process
on loopback, an editor's token made through the registry, then ``--requests`` calls of each
route over one keep-alive connection (halt and flatten of a named pair, the flags, a resume
request); p50/p95/p99 and max per route, in milliseconds (each call includes authentication,
the audit row and, for halt and flatten, the atomic flags update).

With POSTGRES_URL and REDIS_URL set, the registry and the flags are there (a private flags key,
so no running worker is touched); without, the embedded default (SQLite, the flags file).

Run:

    .venv/bin/python benchmarks/bench_ops_api.py --requests 200
    POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python benchmarks/bench_ops_api.py --requests 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis
import yaml

REPO = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _configs(folder: Path, key: str) -> Path:
    """The shipped configs with the private ops flags ``key`` (dev overlay)."""
    root = folder / "configs"
    shutil.copytree(REPO / "configs", root)
    overlay = root / "envs" / "dev" / "serving_policy.yaml"
    data = yaml.safe_load(overlay.read_text()) if overlay.exists() else {}
    redis_doc = yaml.safe_load((root / "base" / "serving_policy.yaml").read_text())["redis"]
    data["redis"] = {"value": {**redis_doc["value"], "ops_flags_key": key}}
    overlay.write_text(yaml.safe_dump(data))
    return root


def _token(root: Path) -> str:
    """An editor of duty ops and their token, in the registry ``root``'s config names."""
    from mlcore.api import Duty, Role, Users
    from mlcore.config import load_config
    from mlcore.registry import registry_for

    users = Users(registry_for(load_config(root, "dev")).engine)
    users.add("bench", Role.EDITOR, Duty.OPS)
    return users.issue("bench").token


def _quantiles(ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 2),
        "p95": round(cuts[94], 2),
        "p99": round(cuts[98], 2),
        "max": round(max(ms), 2),
        "n": len(ms),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="calls per route")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key = f"bench:ops:{uuid.uuid4().hex}"
        root = _configs(folder, key)
        os.environ["ARCHIVE_PATH"] = str(folder / "archive")  # this process and the server's
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        token = _token(root)
        port = _port()
        server = subprocess.Popen(  # noqa: S603 - this interpreter, our arguments
            [
                sys.executable,
                "-m",
                "mlcore",
                "api",
                "serve",
                "--port",
                str(port),
                "--config-root",
                str(root),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            print(json.dumps(_measure(port, token, args.requests), indent=1))
        finally:
            server.terminate()
            server.wait(10)
            if os.environ.get("REDIS_URL"):
                redis.Redis.from_url(os.environ["REDIS_URL"]).delete(key)


def _measure(port: int, token: str, n: int) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    routes = {
        "POST /ops/halt": (
            "post",
            "/ops/halt",
            {"level": "soft", "pairs": ["EUR_GBP"], "reason": "bench"},
        ),
        "POST /ops/flatten": ("post", "/ops/flatten", {"pairs": ["XAU_XAG"], "reason": "bench"}),
        "GET /ops/flags": ("get", "/ops/flags", None),
        "POST /ops/resume": ("post", "/ops/resume", {"pairs": None, "reason": "bench"}),
    }
    out: dict[str, object] = {
        "backend": "postgres+redis"
        if os.environ.get("POSTGRES_URL")
        else "embedded (sqlite, flags file)"
    }
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=30
    ) as http:
        deadline = time.monotonic() + 60
        while True:
            try:
                http.get("/health")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for name, (method, path, body) in routes.items():
            ms = []
            for i in range(n + 5):
                t0 = time.perf_counter()
                resp = http.request(method, path, json=body)
                took = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise SystemExit(f"{name}: {resp.status_code} {resp.text[:300]}")
                if i >= 5:  # warm-up calls not counted
                    ms.append(took)
            out[name] = _quantiles(ms)
    return out


if __name__ == "__main__":
    main()
