"""``mlcore metrics serve`` as a process: it serves what another process recorded into the
multiprocess folder (counters summed across runs), stops on SIGTERM with exit 0, and a port
already taken is one line and exit 2; ``mlcore metrics show`` prints the same exposition."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from mlcore.config import load_config
from mlcore.data import PartitionStore
from tests.conftest import CONFIG_ROOT, free_port

RECORD = """
import sys
from pathlib import Path
from mlcore.config import load_config
import mlcore.observability as o
cfg = load_config(Path(sys.argv[1]), "dev")
o.bind(cfg)
o.record_theta(7, 0.5)
o.record_backtest(3.0)
"""


def _env(archive: Path) -> dict[str, str]:
    env = {**os.environ, "ARCHIVE_PATH": str(archive), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _mlcore(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlcore", *args, "--config-root", str(CONFIG_ROOT)]


def test_serve_sums_the_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = _env(tmp_path / "archive")
    for _ in range(2):  # two short-lived runs
        subprocess.run([sys.executable, "-c", RECORD, str(CONFIG_ROOT)], env=env, check=True,
                       timeout=60)  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(_mlcore("metrics", "serve", "--port", str(port)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "core_theta_trials_total" not in text:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                text = urllib.request.urlopen(url, timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        assert "core_theta_trials_total 14.0" in text  # 7 + 7: counters add up across runs
        assert "core_backtest_duration_seconds_count 2.0" in text
        assert "bt_run_duration 3.0" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}/metrics" in out
    shown = subprocess.run(_mlcore("metrics", "show"), env=env, capture_output=True, text=True,
                           timeout=60, check=True)  # fmt: skip
    assert "core_theta_trials_total 14.0" in shown.stdout


def test_the_watermark_lag_is_computed_at_each_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ingest for hours: the lag keeps growing (a gauge set by the last ingest would not)."""
    archive = tmp_path / "archive"
    monkeypatch.setenv("ARCHIVE_PATH", str(archive))
    cfg = load_config(CONFIG_ROOT, "dev")
    folder = PartitionStore(cfg.paths.raw).symbol_dir("1h", "EUR/USD")
    folder.mkdir(parents=True)
    last = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=5)
    (folder / "_watermark.json").write_text(json.dumps({"last_ts": last.isoformat()}))
    before = time.time()
    shown = subprocess.run(_mlcore("metrics", "show"), env=_env(archive), capture_output=True,
                           text=True, timeout=60, check=True)  # fmt: skip
    after = time.time()
    series = 'data_watermark_lag_seconds{symbol="EUR/USD",timeframe="1h"}'
    line = next(x for x in shown.stdout.splitlines() if x.startswith(series))
    close = last.timestamp() + 3600
    assert before - close - 1 <= float(line.split()[-1]) <= after - close + 1
    assert 'symbol="GBP/USD"' not in shown.stdout  # never ingested: no sample


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(_mlcore("metrics", "serve", "--port", str(port)),
                             env=_env(tmp_path / "archive"), capture_output=True, text=True,
                             timeout=60, check=False)  # fmt: skip
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert "OBS_METRICS_PORT_UNAVAILABLE" in out.stderr and "Traceback" not in out.stderr
    assert len(lines) <= 2, out.stderr


UNWRITABLE = """
import shutil, sys
from pathlib import Path
from mlcore.config import load_config
import mlcore.observability as o
cfg = load_config(Path(sys.argv[1]), "dev")
o.bind(cfg)  # {archive}/metrics is a file: cannot be the folder
o.record_theta(3, 0.1)
folder = Path(sys.argv[2])
o.bind_multiproc(folder)
shutil.rmtree(folder)  # the folder vanishes under a running process
o.record_backtest(2.0)
o.record_retrain(1.0, o.Outcome.SUCCESS)
print("went on")
"""


def test_a_metrics_folder_that_cannot_be_written_never_stops_the_producer(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "metrics").write_text("not a folder")
    out = subprocess.run([sys.executable, "-c", UNWRITABLE, str(CONFIG_ROOT),
                          str(tmp_path / "gone")], env=_env(archive), capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert (out.returncode, out.stdout.strip()) == (0, "went on"), out.stderr
    assert "metrics not recorded by bind" in out.stderr
    assert "metrics not recorded by record_backtest" in out.stderr
