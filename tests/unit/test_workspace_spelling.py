"""What a new user types along the walk-through of docs/your-data.md: symbols spelled as
`ingest --symbol` takes them, and a workspace folder whose path holds spaces."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from mlcore.config import load_config
from tests.unit.test_workspace import _run, project  # noqa: F401 - project is a fixture


@pytest.fixture
def ws(tmp_path: Path, project: Path) -> Path:  # noqa: F811
    folder = tmp_path / "my research"  # a space, as in many home folders
    code, out = _run("init", str(folder), "--config-root", str(project))
    assert code == 0, out
    return folder


def test_add_pair_takes_the_symbol_spellings_ingest_takes(ws: Path) -> None:
    """`ingest --symbol goog` stored GOOG, but `universe add-pair goog btcusd` was refused as
    unknown legs, and its hint (`add-instrument goog`) was itself refused (not normalized)."""
    code, out = _run("universe", "add-pair", "goog", "btc-usd", "--workspace", str(ws))
    assert code == 0, out
    pair = load_config(ws / "configs", "dev").universe.pairs[-1]
    assert (pair.pair_id, pair.leg_a, pair.leg_b) == ("GOOG_BTC", "GOOG", "BTC/USD")
    code, out = _run("universe", "add-pair", "goog", "GOOG", "--workspace", str(ws))
    assert code == 2 and "error CONFIG_PAIR_INVALID: " in out, out
    before = (ws / "configs" / "universe.yaml").read_bytes()
    code, out = _run("universe", "add-pair", "msft", "GOOG", "--workspace", str(ws))
    assert code == 2 and "error CONFIG_INSTRUMENT_UNKNOWN: " in out, out
    assert "`mlcore universe add-instrument MSFT " in out, out  # a command that works
    assert (ws / "configs" / "universe.yaml").read_bytes() == before


def test_commands_printed_for_a_folder_with_spaces_work_when_pasted(
    ws: Path,
    tmp_path: Path,
    project: Path,  # noqa: F811
) -> None:
    """`mlcore init 'my research'` printed `cd /…/my research` (a `cd` to two folders when
    pasted), and its README and the not-a-workspace hint named the folder unquoted."""
    again = tmp_path / "other place"
    code, out = _run("init", str(again), "--config-root", str(project))
    assert code == 0, out
    cd = next(line.strip() for line in out.splitlines() if line.strip().startswith("cd "))
    assert shlex.split(cd) == ["cd", str(again)], cd
    readme = (ws / "README.md").read_text()
    assert f"--workspace {shlex.quote(str(ws))}" in readme
    missing = tmp_path / "no such place"
    code, out = _run("config", "check", "--workspace", str(missing))
    assert code == 2 and "CONFIG_WORKSPACE_MISSING" in out, out
    hint = out.split("`mlcore init ", 1)[1].split("`", 1)[0]
    assert shlex.split(hint) == [str(missing)], out
    assert yaml.safe_load((ws / "mlcore-workspace.yaml").read_text())["kind"] == "user"
