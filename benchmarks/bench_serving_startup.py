"""Start-up time and peak memory of an inference worker, for code trees compared in one run.

Each measurement is a fresh process (``python -c``) that

* ``scorer`` mode: imports ``mlcore.serving``, then loads a model version into the worker's
  scorer (``PairModels.load`` + ``PairScorer``, one bar scored so that numba's cached machine
  code is loaded too);
* ``worker`` mode (with ``--archive``): imports ``mlcore.serving`` and builds a whole
  ``Worker`` of the demo's pairs (configuration, model, scorer, outbox, database, pairs warmed
  on the archive's catalog), with a file bar source and no Redis.

It reports the seconds to each stage inside the process, the whole process's wall time
(interpreter start and exit included), peak RSS (``ru_maxrss``) after each stage, and which
research libraries the process holds after each. The trees given with ``--src NAME=PATH`` are
run alternately, ``--repeats`` times each, after one untimed run each (which fills numba's
on-disk cache); medians (and the spread) are printed and, with ``--json``, written out.

Run (before = the old code checked out elsewhere, after = this tree):

    .venv/bin/python benchmarks/bench_serving_startup.py --model ARCHIVE/models/VERSION \\
        --archive ARCHIVE --src before=/work/wt/base/src --src after=src --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WATCH = ("sklearn", "scipy", "lightgbm", "xgboost", "optuna", "plotly", "alembic", "imblearn",
         "prefect", "mlcore.backtest", "mlcore.training", "mlcore.flows")  # fmt: skip

_CHILD = r"""
import json, resource, sys, time
T0 = time.perf_counter()
from pathlib import Path

WATCH = {watch!r}


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def held():
    return sorted(w for w in WATCH if w in sys.modules)


import mlcore.serving
out = {{"import_s": time.perf_counter() - T0, "import_rss_mib": rss_mib(), "import_held": held()}}
if {mode!r} == "scorer":
    import numpy as np
    from mlcore.serving import INPUT_NAMES, PairScorer
    try:
        from mlcore.execution import PairModels
    except ImportError:  # the code before mlcore.execution existed
        from mlcore.backtest import PairModels
    scorer = PairScorer(PairModels.load(Path({model!r})))
    scorer.score(np.zeros(len(INPUT_NAMES)), True)
else:
    from mlcore.config import load_config
    from mlcore.serving import Worker, WorkerSpec
    cfg = load_config(Path({config_root!r}), "dev")
    root = Path({root!r})
    spec = WorkerSpec("bench-0", tuple(p.pair_id for p in cfg.universe.pairs), {config_root!r},
                      "dev", {model!r}, (0.55, 0.5), root=str(root), bar_source="file",
                      bars_file=str(root / "bars.jsonl"), aggregate=False)
    worker = Worker(spec, cfg=cfg)
out |= {{"ready_s": time.perf_counter() - T0, "ready_rss_mib": rss_mib(), "ready_held": held()}}
print(json.dumps(out))
"""


def _run(src: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        code = _CHILD.format(watch=WATCH, mode=mode, model=str(args.model), root=tmp,
                             config_root=str(args.config_root.resolve()))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "POSTGRES_URL")}
        env["PYTHONPATH"] = src
        if args.archive is not None:
            env["ARCHIVE_PATH"] = str(args.archive)
        t = time.perf_counter()
        cmd = [sys.executable, "-c", code]  # our own code, run in a fresh interpreter
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp, check=False)  # noqa: S603
        wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{src} {mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs)}
    for key in ("import_s", "ready_s", "process_s", "import_rss_mib", "ready_rss_mib"):
        values = [r[key] for r in runs]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    out["import_held"] = runs[-1]["import_held"]
    out["ready_held"] = runs[-1]["ready_held"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a model version folder")
    ap.add_argument("--archive", type=Path, help="the archive whose catalog warms a Worker")
    ap.add_argument("--config-root", type=Path, default=Path("configs"))
    ap.add_argument("--src", action="append", required=True, help="NAME=PATH of a src/ tree")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args()
    trees = dict(s.split("=", 1) for s in args.src)
    trees = {name: str(Path(path).resolve()) for name, path in trees.items()}
    modes = ["scorer"] + (["worker"] if args.archive is not None else [])
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for mode in modes:
        for src in trees.values():
            _run(src, mode, args)  # untimed: numba's cache filled, files in the page cache
        for _ in range(args.repeats):
            for name, src in trees.items():  # alternated, so host load hits both alike
                runs.setdefault((name, mode), []).append(_run(src, mode, args))
    summary = {f"{name}/{mode}": _summary(r) for (name, mode), r in runs.items()}
    head = ("tree/mode", "import s", "ready s", "process s", "RSS import MiB", "RSS ready MiB")
    print(
        "{:<16} {:>9} {:>9} {:>10} {:>15} {:>14}  research libraries held when ready".format(*head)
    )
    for key, s in summary.items():
        cells = [s[k]["median"] for k in ("import_s", "ready_s", "process_s", "import_rss_mib",
                                          "ready_rss_mib")]  # fmt: skip
        held = ", ".join(s["ready_held"]) or "-"
        print(
            "{:<16} {:>9.2f} {:>9.2f} {:>10.2f} {:>15.1f} {:>14.1f}  {}".format(key, *cells, held)
        )
    print(
        f"(medians of {args.repeats} fresh processes each; import-time libraries: "
        + "; ".join(f"{k}: {', '.join(s['import_held']) or '-'}" for k, s in summary.items())
        + ")"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
