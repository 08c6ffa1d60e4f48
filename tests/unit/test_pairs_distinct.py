"""A pair is listed once and has two different legs: universe.yaml with a pair id twice (their
features would share one cache), two pairs of the same legs (XAU_XAG and XAG_XAU: one spread
traded twice) or a pair of one instrument is refused at load (exit 2); a pair
list option with an empty item (``--pairs ,,,``, which served the whole universe) or a pair
twice (two workers on one pair) is refused (exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import load_config
from mlcore.errors import ConfigError
from tests.conftest import CONFIG_ROOT

runner = CliRunner()
ROOT = ["--config-root", str(CONFIG_ROOT)]
LINE = "    - {pair_id: XAU_XAG, leg_a: XAU/USD, leg_b: XAG/USD}\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, dst)
    return dst


def _universe(root: Path, old: str, new: str) -> None:
    path = root / "base" / "universe.yaml"
    body = path.read_text()
    assert old in body
    path.write_text(body.replace(old, new))


SWAPPED = "leg_a: XAG/USD, leg_b: XAU/USD"
REVERSED = LINE.replace("XAU_XAG", "XAG_XAU").replace("leg_a: XAU/USD, leg_b: XAG/USD", SWAPPED)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (LINE + LINE.replace("leg_a: XAU/USD, leg_b: XAG/USD", SWAPPED),
         r"pairs \['XAU_XAG'\] are listed more than once"),
        (LINE.replace("leg_b: XAG/USD", "leg_b: XAU/USD"), "leg_a and leg_b are both 'XAU/USD'"),
        (LINE + REVERSED,
         "pairs 'XAU_XAG' and 'XAG_XAU' have the same legs"),
        (LINE + LINE.replace("XAU_XAG", "GOLD_SILVER"),
         "pairs 'XAU_XAG' and 'GOLD_SILVER' have the same legs"),
    ],
    ids=["id-twice", "one-instrument", "legs-swapped", "legs-twice"],
)  # fmt: skip
def test_a_pair_listed_twice_or_of_one_instrument_is_refused(
    root: Path, line: str, why: str
) -> None:
    _universe(root, LINE, line)
    with pytest.raises(ConfigError, match=why):
        load_config(root, "dev")
    result = runner.invoke(app, ["config", "check", "--config-root", str(root)])
    assert result.exit_code == 2, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["serve", "--pairs", ",,,"], "empty pair id"),
        (["serve", "--pairs", "XAU_XAG,"], "empty pair id"),
        (["serve", "--pairs", ""], "empty pair id"),
        (["serve", "--pairs", "XAU_XAG,XAU_XAG", "--workers", "2"], "XAU_XAG more than once"),
        (
            ["train", "--timeframe", "1h", "--pair", "XAU_XAG", "--pair", "XAU_XAG"],
            "XAU_XAG more than once",
        ),
        (["train", "--timeframe", "1h", "--pair", " "], "empty pair id"),
    ],
)
def test_pair_lists_with_empties_or_repeats_are_refused(
    archive: Path, args: list[str], why: str
) -> None:
    extra = ["--bars", "file"] if args[0] == "serve" else []
    result = runner.invoke(app, [*args, *extra, *ROOT])
    out = result.stdout + result.stderr
    assert result.exit_code == 2, out
    assert "CLI_ARGUMENT_INVALID" in out and why in out, out
