"""A workspace of one's own (`mlcore init`): its configs overlay the shipped ones (adding
instruments, calendars, trading rules and pairs), its archive is its own, the universe commands
edit only its files, and the demo reads nothing of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlcore.cli import app
from mlcore.config import MARKER, load_config
from mlcore.errors import ConfigError
from tests.conftest import CONFIG_ROOT, third_party_csv

runner = CliRunner()
ADD_AAPL = ("universe", "add-instrument", "AAPL", "--calendar", "xnys", "--asset-class",
            "equity", "--quote", "USD")  # fmt: skip


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    out = result.output + (result.stderr if result.stderr_bytes else "")
    assert "Traceback" not in out
    return result.exit_code, out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped configs/ in a project folder of its own (the demo's var/ too)."""
    root = tmp_path / "project" / "configs"
    shutil.copytree(CONFIG_ROOT, root)
    return root


@pytest.fixture
def ws(tmp_path: Path, project: Path) -> Path:
    folder = tmp_path / "mine"
    code, out = _run("init", str(folder), "--config-root", str(project))
    assert code == 0, out
    return folder


def _entries(path: Path, entries: dict[str, object]) -> None:
    path.write_text(yaml.safe_dump({k: {"value": v} for k, v in entries.items()}))


def test_init_makes_the_layout_and_says_what_next(tmp_path: Path, project: Path) -> None:
    folder = tmp_path / "mine"
    code, out = _run("init", str(folder), "--config-root", str(project))
    assert code == 0, out
    assert (folder / "configs" / "universe.yaml").is_file()
    assert (folder / "configs" / "storage.yaml").is_file()
    assert (folder / "archive").is_dir()
    assert "mlcore universe add-instrument" in (folder / "README.md").read_text()
    marker = yaml.safe_load((folder / MARKER).read_text())
    assert marker == {"format_version": 1, "kind": "user", "base_config_root": str(project)}
    assert "next" in out and "add-instrument" in out


def test_init_refuses_a_workspace_or_a_folder_with_things_in_it(ws: Path, tmp_path: Path) -> None:
    code, out = _run("init", str(ws))
    assert code == 2 and "CONFIG_WORKSPACE_REFUSED" in out and "already holds a workspace" in out
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, out = _run("init", str(busy))
    assert code == 2 and "not empty" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run("init", str(empty))[0] == 0


def test_init_where_no_folder_can_be_made_is_one_line_and_leaves_nothing(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a_file").write_text("x")
    code, out = _run("init", str(tmp_path / "a_file" / "ws"), "--config-root", str(project))
    assert code == 2 and "CONFIG_WORKSPACE_REFUSED" in out and "Not a directory" in out
    code, out = _run("init", str(tmp_path / ("x" * 300)), "--config-root", str(project))
    assert code == 2 and "File name too long" in out, out
    # A write failing half-way (a full disk) leaves no half workspace behind.
    from mlcore.config import _workspace

    real, calls = _workspace.write_text_atomic, []

    def failing(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(_workspace, "write_text_atomic", failing)
    code, out = _run("init", str(tmp_path / "full"), "--config-root", str(project))
    assert code == 2 and "No space left on device" in out
    assert not (tmp_path / "full").exists()


def test_init_refuses_a_folder_inside_configs_archives_or_the_demo(
    ws: Path, project: Path, tmp_path: Path
) -> None:
    for inside, why in [
        (project / "mine", "shipped configs folder"),
        (ws / "configs" / "more", "configs/ folder of the workspace"),
        (ws / "archive" / "x" / "y", "archive/ folder of the workspace"),
    ]:
        code, out = _run("init", str(inside), "--config-root", str(project))
        assert code == 2 and "CONFIG_WORKSPACE_REFUSED" in out and why in out, out
        assert not inside.exists()
    assert _run("config", "check", "--workspace", str(ws))[0] == 0
    demo = project.parent / "var" / "demo"
    from mlcore.config import init_workspace

    init_workspace(demo, project, kind="demo")
    code, out = _run("init", str(demo / "mine"), "--config-root", str(project))
    assert code == 2 and "demo's workspace" in out
    # Beside another workspace's own folders is fine.
    assert _run("init", str(ws / "sub"), "--config-root", str(project))[0] == 0


def test_commands_inside_use_its_configs_and_archive(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = _run(*ADD_AAPL, "--workspace", str(ws))
    assert code == 0, out
    assert f"added instrument AAPL to {ws / 'configs' / 'universe.yaml'}" in out
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 0, out
    assert f"archive: {ws / 'archive'} " in out and "AAPL" in out
    monkeypatch.chdir(ws / "archive")  # any folder below the workspace
    code, out = _run("config", "check")
    assert code == 0 and f"({ws / 'configs'})" in out and "AAPL" in out
    monkeypatch.chdir(ws.parent)  # outside: the shipped configs, without AAPL
    code, out = _run("config", "check", "--config-root", str(CONFIG_ROOT))
    assert code == 0 and "AAPL" not in out


def test_an_overlay_adds_instruments_calendars_and_pairs(ws: Path) -> None:
    _entries(ws / "configs" / "universe.yaml", {
        "calendars": {"xnas": {"kind": "exchange", "exchange": "XNAS"}},
        "instruments": {"MSFT": {"asset_class": "equity", "calendar": "xnas",
                                 "quote_currency": "USD"}},
        "trading": {"MSFT": {"tick_size": 0.01, "lot_step": 1.0, "min_lot": 1.0,
                             "min_notional_usd": 1.0, "margin_rate": 0.25}},
        "pairs": [{"pair_id": "MSFT_GOOG", "leg_a": "MSFT", "leg_b": "GOOG"},
                  {"pair_id": "XAU_XAG", "leg_a": "XAG/USD", "leg_b": "XAU/USD"}],
    })  # fmt: skip
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 0, out
    cfg = load_config(ws / "configs", "dev")
    uni = cfg.universe
    assert set(uni.calendars) == {"fx", "crypto", "xnys", "xnas"}
    assert "MSFT" in uni.instruments and "XAU/USD" in uni.instruments
    # Pairs merge by pair_id: a new id is appended, a shipped id replaced in place.
    assert [p.pair_id for p in uni.pairs] == ["XAU_XAG", "EUR_GBP", "BTC_ETH", "MSFT_GOOG"]
    assert uni.pairs[0].leg_a == "XAG/USD"
    assert cfg.paths.archive == ws / "archive"


@pytest.mark.parametrize(
    ("entries", "code", "expect"),
    [
        ({"instruments": {"ABC": {"asset_class": "equity", "calendar": "nope",
                                  "quote_currency": "USD"}}},
         "CONFIG_SCHEMA_INVALID", "unknown calendar 'nope'"),
        ({"trading": {"GOOG": {"tick_size": -1.0, "lot_step": 1.0, "min_lot": 1.0,
                               "min_notional_usd": 1.0, "margin_rate": 0.25}}},
         "CONFIG_SCHEMA_INVALID", "key 'trading.GOOG.tick_size'"),
        ({"sectors": {"tech": ["GOOG"]}}, "CONFIG_WORKSPACE_UNKNOWN_KEY", "key 'sectors'"),
        # A pair id the overlay repeats is refused, not merged away (the first one vanished).
        ({"pairs": [{"pair_id": "X_Y", "leg_a": "GOOG", "leg_b": "EUR/USD"},
                    {"pair_id": "X_Y", "leg_a": "GOOG", "leg_b": "BTC/USD"}]},
         "CONFIG_SCHEMA_INVALID", "pairs ['X_Y'] are listed more than once"),
        ({"pairs": [{"pair_id": "XAU_XAG", "leg_a": "XAU/USD", "leg_b": "XAG/USD"},
                    {"pair_id": "XAU_XAG", "leg_a": "XAG/USD", "leg_b": "XAU/USD"}]},
         "CONFIG_SCHEMA_INVALID", "pairs ['XAU_XAG'] are listed more than once"),
        ({"pairs": [{"pair_id": "X_Y", "leg_a": "GOOG", "leg_b": "BTC/USD",
                     "timeframes": ["1h", "1h"]}]},
         "CONFIG_SCHEMA_INVALID", "timeframes ['1h'] are listed more than once"),
        # A check of the whole file says what is wrong, not "key ''" and the file's content.
        ({"pairs": [{"pair_id": "A_B", "leg_a": "ZZZ", "leg_b": "GOOG"}]},
         "CONFIG_SCHEMA_INVALID", "universe.yaml: pair 'A_B' names unknown instrument 'ZZZ'"),
    ],
)  # fmt: skip
def test_an_overlay_error_names_the_workspace_file(
    ws: Path, entries: dict[str, object], code: str, expect: str
) -> None:
    path = ws / "configs" / "universe.yaml"
    _entries(path, entries)
    exit_code, out = _run("config", "check", "--workspace", str(ws))
    assert exit_code == 2 and code in out and expect in out, out
    assert f"{path}: " in out and "key ''" not in out and "'calendars'" not in out


def test_an_overlay_file_the_base_lacks_is_refused(ws: Path) -> None:
    _entries(ws / "configs" / "univers.yaml", {"pairs": []})
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 2 and "CONFIG_WORKSPACE_UNKNOWN_FILE" in out and "univers.yaml" in out


def test_a_workspace_whose_shipped_configs_are_gone_is_refused(ws: Path, project: Path) -> None:
    shutil.rmtree(project)
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 2 and "CONFIG_WORKSPACE_BASE_MISSING" in out and str(project) in out


def test_an_oversized_marker_is_an_invalid_workspace_not_a_missing_one(ws: Path) -> None:
    """It said "not a workspace ... `mlcore init` makes one", which init then refused."""
    (ws / MARKER).write_text((ws / MARKER).read_text() + "#" * 70_000)
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 2 and "CONFIG_WORKSPACE_INVALID" in out and "over the" in out, out


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        ({"format_version": True}, "CONFIG_WORKSPACE_INVALID"),  # True == 1 in Python
        ({"format_version": 1.0}, "CONFIG_WORKSPACE_INVALID"),
        ({"base_config_root": "/" + "a" * 5000}, "CONFIG_WORKSPACE_BASE_MISSING"),  # too long
    ],
    ids=["version-true", "version-float", "base-too-long"],
)
def test_a_hand_edited_marker_is_refused_in_one_line(
    ws: Path, edit: dict[str, object], code: str
) -> None:
    marker = yaml.safe_load((ws / MARKER).read_text())
    (ws / MARKER).write_text(yaml.safe_dump({**marker, **edit}))
    exit_code, out = _run("config", "check", "--workspace", str(ws))
    assert exit_code == 2 and code in out and "internal error" not in out, out


def test_add_instrument_says_when_the_rewrite_drops_the_user_s_comments(ws: Path) -> None:
    """The overlay is rewritten through PyYAML, which drops comments: that was silent."""
    path = ws / "configs" / "universe.yaml"
    path.write_text(path.read_text() + "# KO is Coca-Cola\n"
                    "instruments:\n  value:\n    KO: {asset_class: equity, calendar: xnys, "
                    "quote_currency: USD}  # red\n  description: 'a # in a string'\n")  # fmt: skip
    code, out = _run(*ADD_AAPL, "--workspace", str(ws))
    assert code == 0 and "note: 2 comment line(s) of universe.yaml were not kept" in out, out
    assert "KO" in load_config(ws / "configs", "dev").universe.instruments
    code, out = _run("universe", "add-pair", "AAPL", "GOOG", "--workspace", str(ws))
    assert code == 0 and "note:" not in out, out


def test_universe_edits_at_once_all_land(ws: Path) -> None:
    """Two `universe add-instrument` at once both said "added", and the last write lost the
    other's instrument."""
    from concurrent.futures import ThreadPoolExecutor

    from mlcore.config._universe_edit import add_instrument

    cfg = load_config(ws / "configs", "dev")
    symbols = ["AAA", "BBB", "CCC", "DDD"]
    with ThreadPoolExecutor(len(symbols)) as pool:
        list(pool.map(lambda s: add_instrument(cfg, s, "xnys", "equity", "USD", {}), symbols))
    assert set(symbols) <= set(load_config(ws / "configs", "dev").universe.instruments)
    with pytest.raises(ConfigError, match="is already in"):
        add_instrument(cfg, "AAA", "xnys", "equity", "USD", {})  # cfg from before AAA


def test_a_broken_workspace_layout_is_one_line(ws: Path) -> None:
    """A configs/ folder gone or a file was an internal error (exit 70); a blank archive_path
    put the archive in the workspace folder itself; a `universe.yml` was silently ignored."""
    (ws / "configs").rename(ws / "configs.old")
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 2 and "CONFIG_WORKSPACE_INVALID" in out and "configs/ folder" in out, out
    (ws / "configs").write_text("")
    assert "CONFIG_WORKSPACE_INVALID" in _run("config", "check", "--workspace", str(ws))[1]
    (ws / "configs").unlink()
    (ws / "configs.old").rename(ws / "configs")
    _entries(ws / "configs" / "storage.yaml", {"archive_path": " "})
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 2 and "key 'archive_path'" in out, out
    _entries(ws / "configs" / "storage.yaml", {"archive_path": "archive"})
    _entries(ws / "configs" / "universe.yml", {"pairs": []})
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 2 and "CONFIG_WORKSPACE_UNKNOWN_FILE" in out and "universe.yml" in out, out


def test_the_universe_commands_say_the_demo_workspace_is_the_demo_s(project: Path) -> None:
    from mlcore.config import fresh_demo_workspace

    demo = fresh_demo_workspace(project)
    code, out = _run(*ADD_AAPL, "--workspace", str(demo.root))
    assert code == 2 and "CONFIG_WORKSPACE_NONE" in out and "the demo's workspace" in out, out


def test_add_instrument_and_pair_write_the_overlay(ws: Path) -> None:
    code, out = _run(*ADD_AAPL, "--tick-size", "0.05", "--workspace", str(ws))
    assert code == 0, out
    code, out = _run("universe", "add-pair", "AAPL", "GOOG", "--timeframe", "1day",
                     "--workspace", str(ws))  # fmt: skip
    assert code == 0 and "added pair AAPL_GOOG" in out, out
    data = yaml.safe_load((ws / "configs" / "universe.yaml").read_text())
    assert data["instruments"]["value"]["AAPL"] == {
        "asset_class": "equity", "calendar": "xnys", "quote_currency": "USD"}  # fmt: skip
    # The equity defaults of universe.yaml trading_defaults, one overridden.
    assert data["trading"]["value"]["AAPL"] == {"tick_size": 0.05, "lot_step": 1.0,
        "min_lot": 1.0, "min_notional_usd": 1.0, "margin_rate": 0.25}  # fmt: skip
    assert data["pairs"]["value"] == [
        {"pair_id": "AAPL_GOOG", "leg_a": "AAPL", "leg_b": "GOOG", "timeframes": ["1day"]}
    ]
    assert "AAPL" not in (CONFIG_ROOT / "base" / "universe.yaml").read_text()
    assert "AAPL_GOOG" in [p.pair_id for p in load_config(ws / "configs", "dev").universe.pairs]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("universe", "add-instrument", "MSFT", "--calendar", "xnas", "--asset-class", "equity",
          "--quote", "USD"), "CONFIG_CALENDAR_UNKNOWN"),
        (("universe", "add-instrument", "msft", "--calendar", "xnys", "--asset-class", "equity",
          "--quote", "USD"), "CONFIG_SYMBOL_INVALID"),
        (("universe", "add-instrument", "GOOG", "--calendar", "xnys", "--asset-class", "equity",
          "--quote", "USD"), "CONFIG_INSTRUMENT_EXISTS"),
        (("universe", "add-instrument", "MSFT", "--calendar", "xnys", "--asset-class", "stock",
          "--quote", "USD"), "CONFIG_ASSET_CLASS_UNKNOWN"),
        (("universe", "add-instrument", "MSFT", "--calendar", "xnys", "--asset-class", "equity",
          "--quote", "usd"), "CONFIG_SCHEMA_INVALID"),
        (("universe", "add-instrument", "MSFT", "--calendar", "xnys", "--asset-class", "equity",
          "--quote", "USD", "--margin-rate", "2"), "CONFIG_SCHEMA_INVALID"),
        (("universe", "add-pair", "XAG/USD", "XAU/USD"), "CONFIG_PAIR_EXISTS"),
        (("universe", "add-pair", "GOOG", "BTC/USD", "--id", "XAU_XAG"), "CONFIG_PAIR_EXISTS"),
        (("universe", "add-pair", "GOOG", "GOOG"), "CONFIG_PAIR_INVALID"),
        (("universe", "add-pair", "MSFT", "GOOG"), "CONFIG_INSTRUMENT_UNKNOWN"),
        # An empty --id was silently the default id; a repeated timeframe silently dropped.
        (("universe", "add-pair", "GOOG", "BTC/USD", "--id", ""), "CONFIG_SCHEMA_INVALID"),
        (("universe", "add-pair", "GOOG", "BTC/USD", "--timeframe", "1h", "--timeframe",
          "60min"), "CLI_ARGUMENT_INVALID"),
        (("universe", "add-pair", "GOOG", "BTC/USD", "--timeframe", "2h"),
         "CLI_ARGUMENT_INVALID"),
    ],
)  # fmt: skip
def test_universe_commands_refuse_bad_input_in_one_line(
    ws: Path, args: tuple[str, ...], code: str
) -> None:
    before = (ws / "configs" / "universe.yaml").read_bytes()
    exit_code, out = _run(*args, "--workspace", str(ws))
    assert exit_code == 2 and f"error {code}: " in out, out
    assert (ws / "configs" / "universe.yaml").read_bytes() == before


def test_universe_commands_refuse_outside_a_workspace(tmp_path: Path) -> None:
    code, out = _run(*ADD_AAPL, "--config-root", str(CONFIG_ROOT))
    assert code == 2 and "CONFIG_WORKSPACE_NONE" in out and "mlcore init" in out


def test_ingest_of_an_unknown_symbol_names_the_command_that_adds_it(ws: Path) -> None:
    args = ("ingest", "--workspace", str(ws), "--symbol", "XPT/USD", "--timeframe", "1h",
            "--path", str(third_party_csv("EURUSD.csv")))  # fmt: skip
    code, out = _run(*args)
    assert code == 2 and "DATA_SYMBOL_UNKNOWN" in out
    assert (
        "`mlcore universe add-instrument XPT/USD --calendar {crypto|fx|xnys} --asset-class" in out
    )
    add = ("universe", "add-instrument", "XPT/USD", "--calendar", "fx", "--asset-class", "metal",
           "--quote", "USD", "--workspace", str(ws))  # fmt: skip
    assert _run(*add)[0] == 0
    code, out = _run(*args)
    assert code == 0 and "ingested XPT/USD 1h" in out, out
    assert (ws / "archive" / "canonical").is_dir()


def test_the_demo_reads_nothing_of_a_user_workspace(
    ws: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlcore.cli._run import demo_config

    assert _run(*ADD_AAPL, "--workspace", str(ws))[0] == 0
    assert _run("universe", "add-pair", "AAPL", "GOOG", "--workspace", str(ws))[0] == 0
    ingest = ("ingest", "--workspace", str(ws), "--symbol", "eurusd", "--timeframe", "1h",
              "--path", str(third_party_csv("EURUSD.csv")))  # fmt: skip
    assert _run(*ingest)[0] == 0
    # A user in their workspace, with ARCHIVE_PATH and MLCORE_WORKSPACE set, runs the demo.
    monkeypatch.chdir(ws)
    monkeypatch.setenv("MLCORE_WORKSPACE", str(ws))
    monkeypatch.setenv("ARCHIVE_PATH", str(ws / "archive"))
    demo = project.parent / "var" / "demo"
    demo.mkdir(parents=True)
    cfg = demo_config()
    assert cfg.config_root == demo / "configs"
    assert cfg.paths.archive == demo / "archive"
    assert not any(cfg.paths.archive.rglob("*.parquet"))
    monkeypatch.delenv("ARCHIVE_PATH")
    shipped = load_config(project, "dev")
    assert cfg.universe == shipped.universe and "AAPL" not in cfg.universe.instruments
    # Made anew each run: what was put in the demo's own workspace is gone.
    _entries(demo / "configs" / "universe.yaml", {"sectors": {}})
    assert demo_config().universe == shipped.universe
    # A user workspace where the demo's goes is never removed.
    shutil.rmtree(demo)
    assert _run("init", str(demo), "--config-root", str(project))[0] == 0
    monkeypatch.delenv("MLCORE_WORKSPACE")
    code, out = _run("demo", "--config-root", str(project))
    assert code == 2 and "CONFIG_WORKSPACE_REFUSED" in out and "user workspace" in out


def test_an_env_folder_in_a_workspace_is_refused(ws: Path) -> None:
    (ws / "configs" / "envs" / "dev").mkdir(parents=True)
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 2 and "CONFIG_WORKSPACE_UNKNOWN_FILE" in out and "envs" in out


def test_ingest_refuses_an_archive_holding_the_demo_market(archive: Path) -> None:
    (archive / "reports").mkdir(parents=True)
    (archive / "reports" / "demo_summary.json").write_text("{}")
    args = ("ingest", "--config-root", str(CONFIG_ROOT), "--symbol", "eurusd", "--timeframe",
            "1h", "--path", str(third_party_csv("EURUSD.csv")))  # fmt: skip
    code, out = _run(*args)
    assert code == 2 and "DATA_ARCHIVE_HOLDS_DEMO" in out and "mlcore init" in out
    assert not (archive / "canonical").exists()


def test_no_user_bars_go_into_the_demo_workspace_the_next_demo_removes(
    ws: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, `mlcore ingest` run in var/demo, or with a workspace's archive_path or
    ARCHIVE_PATH in var/demo/archive, merged the user's bars into the demo's archive, and the
    next `mlcore demo` deleted them."""
    from mlcore.config import fresh_demo_workspace

    demo = fresh_demo_workspace(project)
    csv = str(third_party_csv("EURUSD.csv"))
    ingest = ("ingest", "--symbol", "eurusd", "--timeframe", "1h", "--path", csv)
    code, out = _run(*ingest, "--workspace", str(demo.root))
    assert code == 2 and "DATA_ARCHIVE_HOLDS_DEMO" in out and "demo's workspace" in out, out
    _entries(ws / "configs" / "storage.yaml", {"archive_path": str(demo.archive)})
    code, out = _run(*ingest, "--workspace", str(ws))
    assert code == 2 and "CONFIG_ARCHIVE_IN_DEMO" in out, out
    _entries(ws / "configs" / "storage.yaml", {"archive_path": "archive"})
    monkeypatch.setenv("ARCHIVE_PATH", str(demo.archive / "mine"))
    code, out = _run(*ingest, "--workspace", str(ws))
    assert code == 2 and "CONFIG_ARCHIVE_IN_DEMO" in out, out
    assert not any(demo.archive.rglob("*.parquet"))
    # The demo's own configuration still reads its archive (report, registry list).
    assert load_config(demo.configs, "dev").paths.archive == demo.archive


def test_processes_started_from_a_workspace_config_load_it_again(ws: Path) -> None:
    """Flows and serving workers reload the configuration from ``cfg.config_root``: for a
    workspace that is its configs/, with the same layers; the backtest's config hash covers the
    shipped files and the workspace's."""
    from mlcore.backtest._run import _config_hash

    assert _run(*ADD_AAPL, "--workspace", str(ws))[0] == 0
    cfg = load_config(ws / "configs", "dev")
    again = load_config(cfg.config_root, cfg.env_name)
    assert again.universe == cfg.universe and "AAPL" in again.universe.instruments
    assert ws / "configs" / "universe.yaml" in cfg.config_files()
    before = _config_hash(cfg)
    assert _run("universe", "add-pair", "AAPL", "GOOG", "--workspace", str(ws))[0] == 0
    assert _config_hash(load_config(ws / "configs", "dev")) != before


def test_add_pair_takes_the_timeframe_spellings_of_every_command(ws: Path) -> None:
    """`ingest --timeframe daily` worked while `add-pair --timeframe daily` was refused."""
    code, out = _run("universe", "add-pair", "GOOG", "BTC/USD", "--timeframe", "daily",
                     "--timeframe", "1H", "--workspace", str(ws))  # fmt: skip
    assert code == 0, out
    pair = load_config(ws / "configs", "dev").universe.pairs[-1]
    assert (pair.pair_id, pair.timeframes) == ("GOOG_BTC", ["1day", "1h"])
    assert "note:" not in out
    code, out = _run("universe", "add-pair", "GOOG", "EUR/USD", "--timeframe", "4h",
                     "--workspace", str(ws))  # fmt: skip
    assert code == 0 and "note: no 4h entry in core_policy.yaml labels or backtest_policy" in out


def test_a_workspace_value_equal_to_the_env_overlay_s_is_no_error_of_the_shipped_file(
    ws: Path,
) -> None:
    """A workspace setting `metrics_port: 0` (what envs/dev sets) made every dev command fail
    with CONFIG_OVERLAY_REDUNDANT naming the shipped envs/dev/serving_policy.yaml."""
    _entries(ws / "configs" / "serving_policy.yaml", {"metrics_port": 0})
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 0, out
    assert load_config(ws / "configs", "dev").serving.metrics_port == 0


def test_config_check_says_which_workspace_values_the_env_overlay_overrides(ws: Path) -> None:
    """The shipped env overlay applies last: a workspace's `optuna.ai1_trials: 50` was 8 in dev
    (envs/dev), and `config check` said nothing."""
    _entries(ws / "configs" / "training_policy.yaml", {"optuna": {"ai1_trials": 50,
                                                                  "ai2_trials": 3}})  # fmt: skip
    code, out = _run("config", "check", "--workspace", str(ws))
    assert code == 0, out
    assert "note: training_policy.yaml: optuna.ai1_trials = 50 is not in force in dev" in out
    assert "ai2_trials" not in out  # the same value as envs/dev: in force


def test_a_workspace_whose_marker_is_gone_is_refused_not_the_shipped_configs(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the marker deleted, commands inside silently used the shipped configs and the
    project's archive (the user's bars went there)."""
    (ws / MARKER).unlink()
    monkeypatch.chdir(ws / "archive")
    code, out = _run("config", "check")
    assert code == 2 and "CONFIG_WORKSPACE_INVALID" in out and f"no {MARKER}" in out, out
