"""`mlcore serve` refuses, in one line (exit 2) before any worker starts, a pair the version was
not trained on, a timeframe it was not trained at (saying `--timeframe` and the file to edit),
and a version without decision.json; `--timeframe` serves another timeframe for the run, every
worker setting following it. The model files are stand-ins (``make_version``), their loading
stubbed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.execution import decision_record, parse_params, record_bytes
from mlcore.serving import _models
from tests.conftest import CONFIG_ROOT, make_version

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
V = "20250101_0000_abc1234"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, *ROOT])
    return result.exit_code, result.stdout + result.stderr


def _version(cfg: AppConfig, timeframe: str, pairs: int | None) -> bytes | None:
    """A registered stand-in version whose decision.json has ``timeframe`` and the universe's
    first ``pairs`` pairs (None: no decision.json)."""
    folder = make_version(cfg.paths.models, V)
    record = None
    if pairs is not None:
        record = record_bytes(decision_record(cfg, timeframe, list(cfg.universe.pairs)[:pairs]))
        (folder / "decision.json").write_bytes(record)
        sums = json.loads((folder / "checksums.json").read_text())
        sums["decision.json"] = hashlib.sha256(record).hexdigest()
        (folder / "checksums.json").write_text(json.dumps(sums))
    assert _run("registry", "register", "--model", V, "--notes", "n")[0] == 0
    return record


@pytest.fixture
def stub_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(folder: Path, *_: object, **__: object) -> SimpleNamespace:
        data = (Path(folder) / "decision.json").read_bytes()
        params = parse_params(Path(folder).name, data)
        return SimpleNamespace(version=Path(folder).name, decision_params=lambda: params)

    monkeypatch.setattr(_models.PairModels, "load", load)


def _one_line(out: str, code: str) -> None:
    assert "Traceback" not in out and "internal error" not in out, out
    said = [x for x in out.splitlines() if x.strip() and not x.startswith("{")]
    assert len(said) == 1 and said[0].startswith(f"error {code}"), out


@pytest.mark.usefixtures("stub_load")
def test_serve_refuses_a_pair_the_version_was_not_trained_on(archive: Path, cfg: AppConfig) -> None:
    assert len(cfg.universe.pairs) > 1
    _version(cfg, cfg.serving.timeframe, 1)
    both = ",".join(p.pair_id for p in cfg.universe.pairs[:2])
    code, out = _run("serve", "--bars", "file", "--model", V, "--pairs", both,
                     "--exit-when-idle", "0.5")  # fmt: skip
    assert code == 2, out
    _one_line(out, "SERVING_PAIR_NOT_IN_VERSION")
    assert cfg.universe.pairs[1].pair_id in out and V in out


def test_by_default_serving_takes_the_universe_pairs_the_version_was_trained_on(
    cfg: AppConfig,
) -> None:
    """A workspace cannot remove the shipped pairs, so `mlcore serve` of a version trained on
    the workspace's own daily pairs was refused whole (SERVING_PAIR_NOT_IN_VERSION naming
    XAU_XAG, EUR_GBP, BTC_ETH); named pairs are still refused."""
    from mlcore.execution import pairs_to_serve

    pairs = list(cfg.universe.pairs)
    universe = [p.pair_id for p in pairs]
    params = parse_params(V, record_bytes(decision_record(cfg, cfg.serving.timeframe,
                                                          pairs[1:2])))  # fmt: skip
    ids, skipped = pairs_to_serve(params, universe, None)
    assert ids == [universe[1]]
    assert skipped == [f"pair {p} skipped: model version {V} was not trained on it"
                       for p in universe if p != universe[1]]  # fmt: skip
    assert pairs_to_serve(params, universe, universe[:2]) == (universe[:2], [])
    none = parse_params(V, record_bytes(decision_record(cfg, cfg.serving.timeframe, [])))
    assert pairs_to_serve(none, universe, None) == (universe, [])  # refused by check_serving


@pytest.mark.usefixtures("stub_load")
def test_serve_refuses_a_timeframe_the_version_was_not_trained_at(
    archive: Path, cfg: AppConfig
) -> None:
    other = "1day" if cfg.serving.timeframe != "1day" else "1h"
    _version(cfg, other, len(cfg.universe.pairs))
    code, out = _run("serve", "--bars", "file", "--model", V, "--exit-when-idle", "0.5")
    assert code == 2, out
    _one_line(out, "SERVING_TIMEFRAME_MISMATCH")
    # Why (both timeframes, where the served one comes from) and what to do, in the one line.
    assert f"trained at {other}, serving is at {cfg.serving.timeframe}" in out, out
    assert f"`mlcore serve --timeframe {other}`" in out, out
    assert f"(timeframe in {CONFIG_ROOT / 'base' / 'serving_policy.yaml'})" in out, out
    assert f"(or set timeframe: {other} there)" in out, out


@pytest.mark.usefixtures("stub_load")
def test_serve_takes_the_timeframe_of_the_version_by_option(archive: Path, cfg: AppConfig) -> None:
    """A version trained at 1day is served with `--timeframe 1day` (any spelling the other
    commands take), no edit of serving_policy.yaml: its timeframe check passes, so the next
    check speaks (here: a pair it lacks); the option is named when it is what disagrees."""
    assert cfg.serving.timeframe == "1h"
    _version(cfg, "1day", 1)
    both = ",".join(p.pair_id for p in cfg.universe.pairs[:2])
    for spelling in ("1day", "daily", "1D"):
        code, out = _run("serve", "--bars", "file", "--model", V, "--pairs", both,
                         "--timeframe", spelling, "--exit-when-idle", "0.5")  # fmt: skip
        assert code == 2, out
        _one_line(out, "SERVING_PAIR_NOT_IN_VERSION")
    code, out = _run("serve", "--bars", "file", "--model", V, "--timeframe", "1H",
                     "--exit-when-idle", "0.5")  # fmt: skip
    assert code == 2, out
    _one_line(out, "SERVING_TIMEFRAME_MISMATCH")
    assert "serving is at 1h (--timeframe)" in out and "--timeframe 1day`" in out, out


def test_serve_refuses_a_timeframe_without_its_policies_in_one_line(archive: Path) -> None:
    code, out = _run("serve", "--bars", "file", "--timeframe", "4h", "--exit-when-idle", "0.5")
    assert code == 2, out
    _one_line(out, "CONFIG_TIMEFRAME_POLICY_MISSING")  # no label or execution policy at 4h
    assert "--timeframe 4h: core_policy.yaml: key 'labels'" in out, out
    code, out = _run("serve", "--timeframe", "3h")
    assert code == 2 and "3h" in out and "Traceback" not in out, out


def test_a_timeframe_override_reaches_everything_the_workers_derive(cfg: AppConfig) -> None:
    """`--timeframe` is carried to the worker processes (their config read anew) and every
    derived setting follows it: bar length, valid_until, drawdown review, catalog history;
    a timeframe without its policies is refused naming the option and the key."""
    from mlcore.errors import ConfigError
    from mlcore.serving._setup import pair_setup, serving_at
    from mlcore.serving._swap import base_config
    from mlcore.serving._worker import WorkerSpec

    spec = WorkerSpec(worker_id="w", pair_ids=(), config_root=str(CONFIG_ROOT), env_name="dev",
                      model_folder="m", theta=(0.5, 0.5), timeframe="1day")  # fmt: skip
    daily = base_config(spec)
    assert daily.serving.timeframe == "1day" and cfg.serving.timeframe == "1h"
    pair = cfg.universe.pairs[0]
    hourly_setup = pair_setup(cfg, pair, (0.5, 0.5), "0" * 64)
    daily_setup = pair_setup(daily, pair, (0.5, 0.5), "0" * 64)
    assert (hourly_setup.bar_seconds, daily_setup.bar_seconds) == (3600, 86400)
    # valid_until = close + signal_valid_seconds of the timeframe: 5 min for an hourly signal;
    # a daily one (closing at midnight UTC) holds until the next daily close, not 00:05.
    assert (hourly_setup.valid_seconds, daily_setup.valid_seconds) == (300, 86400)
    review = cfg.backtest.execution_at("1day").halt_review_bars
    assert daily_setup.drawdown.review == review
    assert serving_at(cfg, None) is cfg and serving_at(cfg, "1h") is cfg
    bare = cfg.serving.model_copy(update={"signal_valid_seconds": {"1h": 300.0}})
    with pytest.raises(ConfigError) as exc:
        serving_at(replace(cfg, serving=bare), "1day")
    assert exc.value.code == "CONFIG_TIMEFRAME_POLICY_MISSING"
    assert str(exc.value).count("\n") == 0 and "--timeframe 1day" in str(exc.value)
    assert "signal_valid_seconds" in str(exc.value)
    flat = cfg.serving.model_copy(update={"signal_valid_seconds": 600.0})
    assert pair_setup(serving_at(replace(cfg, serving=flat), "1day"), pair, (0.5, 0.5),
                      "0" * 64).valid_seconds == 600  # fmt: skip


def test_serve_refuses_a_version_without_its_decision_parameters(
    archive: Path, cfg: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_models.PairModels, "load", lambda folder, *_, **__: SimpleNamespace(
        version=Path(folder).name, decision_params=lambda: _no(Path(folder).name)))  # fmt: skip
    _version(cfg, cfg.serving.timeframe, None)
    code, out = _run("serve", "--bars", "file", "--model", V, "--exit-when-idle", "0.5")
    assert code == 2, out
    _one_line(out, "MODEL_PARAMS_MISSING")
    assert V in out and "retrain" in out


def _no(version: str) -> None:
    from mlcore.execution import no_record

    raise no_record(version)


def test_the_timeframe_refusal_names_the_file_that_sets_it_and_the_one_to_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a workspace without its own serving_policy.yaml the timeframe is the shipped one,
    and the file to edit is the workspace's own; once that sets it, it is named for both."""
    from mlcore.config import load_config
    from mlcore.serving._setup import policy_files

    monkeypatch.chdir(tmp_path)
    code, out = _run("init", "ws")
    assert code == 0, out
    own = tmp_path / "ws" / "configs" / "serving_policy.yaml"
    ws = load_config(own.parent, "dev")
    shipped = str(ws.base_root / "base" / "serving_policy.yaml")
    assert policy_files(ws) == (shipped, str(own))
    own.write_text("timeframe: {value: 1day}\n")
    assert policy_files(load_config(own.parent, "dev")) == (str(own), str(own))
    assert policy_files(load_config(CONFIG_ROOT, "dev")) == (shipped, shipped)
