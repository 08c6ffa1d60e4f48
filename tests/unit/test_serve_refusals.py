"""`mlcore serve` refuses, in one line (exit 2) before any worker starts, a pair the version was
not trained on, a timeframe it was not trained at, and a version without decision.json. The
model files are stand-ins (``make_version``), their loading stubbed."""

from __future__ import annotations

import hashlib
import json
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
    assert f"trained at {other}" in out


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
