"""θ is traded on only when it is a pair of finite numbers inside core_policy.yaml's
theta_search_range, whatever it comes from: a backtest record (``serve --model``, ``registry
register``) or a registry row (the deployed path). A rejected version is served only with
``--force-rejected``. The model files are stand-ins (``make_version``); loading them is stubbed
where the code under test comes after it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from mlcore.errors import ThetaMalformed, ThetaOutOfRange
from mlcore.execution import (
    checked_theta,
    decision_record,
    parse_params,
    previous_theta,
    record_bytes,
)
from mlcore.registry import registry_for
from mlcore.registry._tables import model_registry
from mlcore.serving import _models
from tests.conftest import CONFIG_ROOT, make_version

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
V = "20250101_0000_abc1234"
W = "20250102_0000_abc1234"

MALFORMED = ['{"theta":{}}', "[", '{"theta":{"adopted":["1e999","abc"]}}',
             '{"theta":{"adopted":[0.5]}}', '{"theta":{"adopted":[true, 0.5]}}', ""]  # fmt: skip
OUT_OF_RANGE = ['{"theta":{"adopted":[-1e9,1e9]}}', '{"theta":{"adopted":[1e999,0.5]}}',
                '{"theta":{"adopted":[NaN,0.5]}}', '{"theta":{"adopted":[0.5,-Infinity]}}',
                '{"theta":{"adopted":[1.5,0.5]}}']  # fmt: skip


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, *ROOT])
    return result.exit_code, result.stdout + result.stderr


def _record(cfg: AppConfig, version: str, body: str) -> Path:
    path = cfg.paths.reports / "backtest" / version / "backtest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def _one_line(out: str) -> None:
    assert "Traceback" not in out and "internal error" not in out, out
    said = [x for x in out.splitlines() if x.strip() and not x.startswith("{")]  # not the log
    assert len(said) == 1 and said[0].startswith("error "), out


@pytest.mark.parametrize("body", MALFORMED)
def test_register_with_a_malformed_backtest_record_is_one_line_exit_65(
    archive: Path, cfg: AppConfig, body: str
) -> None:
    make_version(archive / "models", V)
    _record(cfg, V, body)
    code, out = _run("registry", "register", "--model", V, "--notes", "n")
    assert code == 65, out
    assert "MODEL_THETA_MALFORMED" in out and "backtest.json" in out
    _one_line(out)


@pytest.mark.parametrize("body", OUT_OF_RANGE)
def test_register_with_theta_out_of_range_is_refused(
    archive: Path, cfg: AppConfig, body: str
) -> None:
    make_version(archive / "models", V)
    _record(cfg, V, body)
    code, out = _run("registry", "register", "--model", V, "--notes", "n")
    assert code == 1, out
    assert "MODEL_THETA_OUT_OF_RANGE" in out and "backtest.json" in out
    _one_line(out)
    assert not registry_for(cfg).versions.exists(V)


def test_register_with_a_theta_in_range_records_it(archive: Path, cfg: AppConfig) -> None:
    make_version(archive / "models", V)
    _record(cfg, V, '{"theta":{"adopted":[0.6,0.3]}}')
    code, out = _run("registry", "register", "--model", V, "--notes", "n")
    assert code == 0, out
    rec = registry_for(cfg).get(V)
    assert (rec.theta1, rec.theta2) == (0.6, 0.3)


@pytest.mark.parametrize("body", OUT_OF_RANGE + MALFORMED)
def test_previous_theta_refuses_what_it_cannot_trade_on(cfg: AppConfig, body: str) -> None:
    record = _record(cfg, V, body)
    with pytest.raises((ThetaMalformed, ThetaOutOfRange)) as err:
        previous_theta(cfg, SimpleNamespace(version=V))  # type: ignore[arg-type]
    assert str(record) in str(err.value)


def test_checked_theta_keeps_a_theta_in_range(cfg: AppConfig) -> None:
    box = cfg.core.theta_search_range
    assert checked_theta(cfg, [box.theta1[0], box.theta2[1]], "x") == (
        box.theta1[0], box.theta2[1],
    )  # fmt: skip


@pytest.fixture
def stub_load(monkeypatch: pytest.MonkeyPatch, cfg: AppConfig) -> None:
    """Stand-in model files are not parsed: what is under test comes after loading them (their
    decision parameters are today's configuration's)."""

    def load(folder: Path, *_: object, **__: object) -> SimpleNamespace:
        record = record_bytes(decision_record(cfg, "1h", list(cfg.universe.pairs)))
        params = parse_params(Path(folder).name, record)
        return SimpleNamespace(version=Path(folder).name, decision_params=lambda: params)

    monkeypatch.setattr(_models.PairModels, "load", load)


@pytest.mark.usefixtures("stub_load")
def test_serve_model_with_theta_out_of_range_is_refused_naming_the_file(
    archive: Path, cfg: AppConfig
) -> None:
    make_version(archive / "models", V)
    assert _run("registry", "register", "--model", V, "--notes", "n")[0] == 0
    _record(cfg, V, '{"theta":{"adopted":[-1e9,1e9]}}')
    code, out = _run("serve", "--bars", "file", "--model", V, "--exit-when-idle", "0.5")
    assert code == 1, out
    assert "MODEL_THETA_OUT_OF_RANGE" in out and "backtest.json" in out and "-1000000000" in out
    _one_line(out)


@pytest.mark.usefixtures("stub_load")
def test_a_deployed_row_with_theta_out_of_range_is_passed_over(
    archive: Path, cfg: AppConfig
) -> None:
    reg = registry_for(cfg)
    for version in (V, W):
        reg.register(make_version(archive / "models", version), actor="t", notes="n")
        for to in ("candidate", "approved", "deployed"):
            reg.transition(version, to, actor="t", notes="n")
    with reg.engine.begin() as conn:  # a row written behind the registry's back
        conn.execute(update(model_registry).where(model_registry.c.model_version == W)
                     .values(theta1=-1e9, theta2=1e9))  # fmt: skip
    served = _models.deployed_model(cfg, reg)
    assert served.version == V
    assert "outside" in served.why


@pytest.mark.usefixtures("stub_load")
def test_serve_model_of_a_rejected_version_needs_force(archive: Path, cfg: AppConfig) -> None:
    reg = registry_for(cfg)
    reg.register(make_version(archive / "models", V), actor="t", notes="n")
    reg.transition(V, "rejected", actor="t", notes="bad")
    code, out = _run("serve", "--bars", "file", "--model", V, "--exit-when-idle", "0.5")
    assert code == 1, out
    assert "SERVING_MODEL_REJECTED" in out and "--force-rejected" in out
    _one_line(out)
    served = _models.named_model(cfg, reg, V, allow_rejected=True)
    assert served.version == V and "REJECTED" in served.why


def test_the_registry_never_records_a_theta_outside_0_1(archive: Path, cfg: AppConfig) -> None:
    reg = registry_for(cfg)
    with pytest.raises(ValueError, match="finite rates"):
        reg.register(make_version(archive / "models", V), actor="t", notes="n",
                     theta=(float("nan"), 0.5))  # fmt: skip
    assert not reg.versions.exists(V)
    reg.register(archive / "models" / V, actor="t", notes="n")
    reg.transition(V, "candidate", actor="t", notes="n")
    with pytest.raises(ValueError, match="finite rates"):
        reg.transition(V, "approved", actor="t", notes="n", theta=(0.5, 2.0))


@pytest.mark.parametrize("theta", [(float("nan"), 0.3), (1.5, 0.3), (0.7, -1e9)])
def test_a_worker_refuses_a_theta_that_is_no_rate(cfg: AppConfig, theta: tuple) -> None:
    """A worker checks the θ it is given once more: finite and in [0, 1] (the registry and the
    backtest record, its sources, hold it to theta_search_range; a replay may try others)."""
    from mlcore.serving._setup import pair_setup

    with pytest.raises(ThetaOutOfRange, match="this worker"):
        pair_setup(cfg, cfg.universe.pairs[0], theta, "0" * 64)
    assert pair_setup(cfg, cfg.universe.pairs[0], (0.55, 0.5), "0" * 64).rules.theta1 == 0.55
