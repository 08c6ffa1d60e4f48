"""Optuna trials spread over workers: two processes tuning the same inputs share one study in
this machine's PostgreSQL server, and together run the trials one process would."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from mlcore.training import BinaryTrainConfig
from mlcore.training._tune import SharedStudy, tune
from tests.conftest import postgres_url
from tests.unit.test_tune import _events

TRIALS = 8
CFG = BinaryTrainConfig(max_rounds=40, seed=5)


@pytest.fixture
def url() -> Iterator[str]:
    yield from postgres_url()


def _worker(url: str, out: Any, start: Any) -> None:
    X, y, t0, t1 = _events()
    start.wait(timeout=120)  # both at once, on a database Optuna has not set up yet
    tuned, summary = tune(X, y, t0, t1, CFG, "logloss", TRIALS, "AI1", SharedStudy(url))
    out.put((tuned.learning_rate, summary))


def test_two_processes_share_one_study(url: str) -> None:
    ctx = mp.get_context("spawn")
    out, start = ctx.Queue(), ctx.Barrier(2)
    workers = [ctx.Process(target=_worker, args=(url, out, start)) for _ in range(2)]
    for w in workers:
        w.start()
    results: list[Any] = []
    deadline = time.monotonic() + 300
    while len(results) < len(workers) and time.monotonic() < deadline:
        try:
            results.append(out.get(timeout=2))
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            assert not dead, f"a worker died (exit codes {dead}); see its stderr above"
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    [summary] = optuna.study.get_all_study_summaries(url)
    assert summary.study_name.startswith("mlcore-ai1-")
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    # Each worker stops once the study holds TRIALS finished trials (one more may be running
    # in the other worker at that moment).
    assert TRIALS <= len(done) <= TRIALS + 1
    by_worker = {t.user_attrs["worker"] for t in done}
    assert len(by_worker) == 2, "both processes ran trials"
    assert all(0 < sum(t.user_attrs["worker"] == w for t in done) < len(done) for w in by_worker)
    # The settings each worker adopted are the best of the trials it could see; the worker that
    # finished last saw them all.
    best = study.best_trial
    assert any(s["best_value"] == best.value and s["trials"] == len(done) for _, s in results)
    assert "shared study mlcore-ai1-" in results[0][1]["sampler"]


def test_the_same_inputs_meet_in_the_same_study_and_others_do_not(url: str) -> None:
    X, y, t0, t1 = _events(n=800)
    tune(X, y, t0, t1, CFG, "logloss", 2, "AI1", SharedStudy(url))
    _, again = tune(X, y, t0, t1, CFG, "logloss", 3, "AI1", SharedStudy(url))
    assert again["trials"] == 3  # the study already held 2; one more was needed
    X2, y2, _, _ = _events(n=800, seed=9)
    _, other = tune(X2, y2, t0, t1, CFG, "logloss", 2, "AI1", SharedStudy(url))
    assert other["trials"] == 2
    assert len(optuna.study.get_all_study_summaries(url)) == 2
