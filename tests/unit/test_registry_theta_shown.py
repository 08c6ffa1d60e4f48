"""`mlcore registry list` and `show` give a version's θ as its backtest adopted it: `mlcore train`
registers before the backtest, so the row's θ stayed empty and the table showed "-" beside
the "θ adopted by its backtest" line `show` printed (and the θ serving uses)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import AppConfig
from tests.conftest import CONFIG_ROOT, make_version

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
V = "20250101_0000_abc1234"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, *ROOT], env={"COLUMNS": "200"})
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    return result.exit_code, out


def test_the_table_shows_the_theta_the_backtest_adopted(archive: Path, cfg: AppConfig) -> None:
    make_version(cfg.paths.models, V)
    assert _run("registry", "register", "--model", V, "--notes", "n")[0] == 0
    code, out = _run("registry", "list")
    assert code == 0 and V in out and "0.7123" not in out, out
    record = cfg.paths.reports / "backtest" / V / "backtest.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"decision": "reject", "theta": {"adopted": [0.7123, 0.2765]}}))
    for args in (("registry", "list"), ("registry", "show", V)):
        code, out = _run(*args)
        assert code == 0 and "0.7123" in out and "0.2765" in out, out
    record.write_text("{not json")  # a damaged record: the row as it is, no error
    code, out = _run("registry", "list")
    assert code == 0 and "0.7123" not in out, out
