"""A new user's path with real daily data, as docs/your-data.md shows it: `mlcore init`, two
real daily CSVs (KO and PEP from skfolio's bundled S&P 500 data), `universe add-instrument` /
`add-pair`, `ingest`, `catalog build`, `features build`, `train`, `backtest`, `report` and
the registry, every command run inside the workspace, no file edited by hand. Each step works
or says in one line why not; the shipped configs are untouched. On this trained version the
engine reconciles to the cent on real prices."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from skfolio.datasets import load_sp500_dataset
from typer.testing import CliRunner

from mlcore.backtest import PairModels, pair_bars, pair_setups, run_portfolio
from mlcore.cli import app
from mlcore.config import load_config
from mlcore.data import Catalog
from tests.conftest import CONFIG_ROOT, REPO

runner = CliRunner()
ARTIFACTS = REPO / "tests" / "artifacts"


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass
class Walk:
    """The workspace and what each command printed, in order."""

    ws: Path
    steps: list[tuple[str, int, str]] = field(default_factory=list)

    def run(self, *args: str, codes: tuple[int, ...] = (0,)) -> str:
        result = runner.invoke(app, list(args))
        out = result.output + (result.stderr if result.stderr_bytes else "")
        self.steps.append((" ".join(args), result.exit_code, out))
        assert "Traceback" not in out, out
        assert result.exit_code in codes, f"mlcore {' '.join(args)} -> {result.exit_code}\n{out}"
        return out


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    home = tmp_path_factory.mktemp("user")
    prices = load_sp500_dataset()
    for sym in ("KO", "PEP"):
        close = prices[sym]
        pd.DataFrame(
            {"Date": close.index.strftime("%Y-%m-%d"), "Open": close, "High": close,
             "Low": close, "Close": close}
        ).to_csv(home / f"{sym}.csv", index=False)  # fmt: skip
    shipped = _tree_hash(CONFIG_ROOT)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("ARCHIVE_PATH", "MLCORE_CONFIG_ROOT", "MLCORE_WORKSPACE", "SERVICE_ENV"):
            mp.delenv(var, raising=False)
        mp.chdir(home)
        w = Walk(home / "ws")
        w.run("init", "ws")
        mp.chdir(w.ws)
        for sym in ("KO", "PEP"):
            w.run("universe", "add-instrument", sym, "--calendar", "xnys", "--asset-class",
                  "equity", "--quote", "USD")  # fmt: skip
        w.run("universe", "add-pair", "KO", "PEP", "--timeframe", "1day")
        for sym in ("KO", "PEP"):
            w.run("ingest", "--path", f"../{sym}.csv", "--symbol", sym, "--timeframe", "1day")
        w.run("catalog", "build")
        w.run("features", "build", "--timeframe", "1day")
        # Exit 1 when the training is blocked (the verdict's test below tells which).
        w.run("train", "--timeframe", "1day", "--no-direction", codes=(0, 1))
        w.run("backtest")
        w.run("report")
        w.run("registry", "list")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "new_user.txt").write_text(
            "".join(f"$ mlcore {cmd}\n{out}\n" for cmd, _, out in w.steps)
        )
        yield w
    assert _tree_hash(CONFIG_ROOT) == shipped  # nothing shipped was edited on the way


def _out(walk: Walk, prefix: str) -> str:
    return next(out for cmd, _, out in walk.steps if cmd.startswith(prefix))


def test_every_step_works_inside_the_workspace_without_editing_a_file(walk: Walk) -> None:
    assert [code for cmd, code, _ in walk.steps if not cmd.startswith("train")] == [0] * (
        len(walk.steps) - 1
    )
    universe = (walk.ws / "configs" / "universe.yaml").read_text()
    assert "KO_PEP" in universe and "1day" in universe
    ingest = _out(walk, "ingest --path ../KO.csv")
    assert "8313 rows read, 0 rejected, 8313 new" in ingest
    # Months counted, a few named, not printed one by one.
    assert "canonical partitions written: 396: 1990-01, 1990-02, 1990-03, …, 2022-11, 2022-12;" in (
        ingest
    )
    features = _out(walk, "features build")
    # The shipped hourly pairs have no daily bars here: skipped, one line each.
    assert "pair XAU_XAG skipped: no included 1day bars of XAU/USD and XAG/USD" in features
    assert "features KO_PEP 1day" in features
    # The user's data live in the workspace's own archive, nowhere else.
    assert (walk.ws / "archive" / "canonical" / "1day" / "KO").is_dir()


def test_training_gives_a_verdict_that_explains_itself(walk: Walk) -> None:
    (code,) = [c for cmd, c, _ in walk.steps if cmd.startswith("train")]
    out = _out(walk, "train")
    line = next(x for x in out.splitlines() if x.startswith("retrain_status="))
    if "blocked" in line:
        # A degenerate model names itself, its figure and what to try (measured here: AI1's
        # calibrated probability is one value on every test row on this pair), and the
        # command fails, so that a script does not go on as if the version were usable.
        assert "ai1: " in out and "try more history" in out
        assert "registered" in out and "as rejected" in out
        assert code == 1 and "error TRAIN_RUN_BLOCKED: training of " in out
    else:
        assert line.strip() == "retrain_status=ok" and code == 0


def test_the_backtest_shows_what_the_models_add_and_its_decision(walk: Walk) -> None:
    out = _out(walk, "backtest")
    assert "plain z-score rule (no AI gates), same window, costs and sizing" in out
    assert "decision: " in out and "report: " in out
    report = Path(out.split("report: ")[-1].split()[0].strip())
    assert report.is_file() and report.is_relative_to(walk.ws / "archive")
    record = json.loads((report.parent / "backtest.json").read_text())
    assert record["lineage"]["timeframe"] == "1day"
    assert record["zscore_rule_test"]["trades"] > 0
    assert _out(walk, "report").strip().endswith(str(report))


def test_the_engine_reconciles_to_the_cent_on_real_prices(walk: Walk) -> None:
    """With every |z| signal taken (θ1 = 0, θ2 = 1), trades happen, are β-hedged, pay costs,
    and the account's last equity is the capital plus their P&L."""
    cfg = load_config(walk.ws / "configs", "dev")
    folder = next((walk.ws / "archive" / "models").iterdir())
    models = PairModels.load(folder)
    pair = next(p for p in cfg.universe.pairs if p.pair_id == "KO_PEP")
    bars = pair_bars(cfg, Catalog(cfg), models, pair, "1day")
    run = run_portfolio([bars], pair_setups(cfg, "1day", {"KO_PEP"}), 0.0, 1.0)
    trades = run.trades
    assert len(trades) > 100
    assert (trades["cost_usd"] > 0).all()
    assert (trades["units_a"] != 0).all() and (trades["units_b"] != 0).all()
    assert run.daily.iloc[-1] == pytest.approx(
        cfg.backtest.account.capital_usd + trades["pnl_usd"].sum(), rel=1e-9
    )


def test_the_daily_version_is_served_at_its_timeframe_without_editing_a_file(walk: Walk) -> None:
    """The workspace serves 1h (serving_policy.yaml); the version was trained at 1day. Without
    `--timeframe` serving refuses in one line saying both timeframes and the option; with
    `--timeframe daily` the workers replay its last daily bars, warmed on the catalog's daily
    history, and each signal holds until the next daily close (not 5 minutes after midnight)."""
    import sqlite3

    version = next((walk.ws / "archive" / "models").iterdir()).name
    args = ["serve", "--model", version, "--force-rejected", "--replay-last", "20",
            "--exit-when-idle", "2"]  # fmt: skip
    refused = runner.invoke(app, args)
    said = [x for x in refused.output.splitlines() if x.strip() and not x.startswith("{")]
    assert refused.exit_code == 2 and len(said) == 1, refused.output
    assert said[0].startswith("error SERVING_TIMEFRAME_MISMATCH"), said
    assert "trained at 1day, serving is at 1h" in said[0] and "--timeframe 1day" in said[0]
    assert f"(timeframe in {CONFIG_ROOT / 'base' / 'serving_policy.yaml'})" in said[0]
    own = walk.ws / "configs" / "serving_policy.yaml"  # the workspace has none of its own yet
    assert f"(or set timeframe: 1day in {own})" in said[0]
    ran = runner.invoke(app, [*args, "--timeframe", "daily"])
    assert ran.exit_code == 0 and "Traceback" not in ran.output, ran.output
    rows = []
    for db in sorted((walk.ws / "archive" / "serving-replay" / "outbox").glob("*.db")):
        conn = sqlite3.connect(db)
        try:
            rows += [json.loads(r[0]) for r in conn.execute("SELECT payload FROM signals")]
        finally:
            conn.close()
    assert rows, ran.output
    for sig in rows:
        close = pd.Timestamp(sig["timestamp"])
        assert pd.Timestamp(sig["valid_until"]) - close == pd.Timedelta(days=1), sig
        assert close.hour == 0 and close.minute == 0, sig  # daily bars' close
