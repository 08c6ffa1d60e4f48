"""``mlcore init DIR`` (a workspace of one's own) and ``mlcore universe add-instrument`` /
``add-pair`` (edit the workspace's universe overlay)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlcore.cli._app import app, chosen_root, command, load_config, typer_app
from mlcore.cli._params import parse_timeframe
from mlcore.cli._render import text
from mlcore.errors import ConfigError

if TYPE_CHECKING:
    from mlcore.config._universe_edit import Added

universe_app = typer_app("Add instruments and pairs to the workspace's universe.")

_RULE_HELP = "Override the asset class's default (universe.yaml trading_defaults)."
FloatOpt = Annotated[float | None, typer.Option(min=0.0, help=_RULE_HELP)]


def shipped_root() -> Path:
    """The shipped configs folder: the base of the workspace in force, else the config root."""
    from mlcore.config import find_config_root, workspace_of

    root = (chosen_root() or find_config_root()).resolve()
    ws = workspace_of(root)
    return ws.base_root if ws is not None else root


@command(app, "init")
def init(
    folder: Annotated[Path, typer.Argument(help="New or empty folder for the workspace.")],
) -> None:
    """Make a workspace: its own configs (overlays on the shipped ones), archive and README."""
    from mlcore.config import init_workspace

    base = shipped_root()
    made = init_workspace(folder, base)
    root = made[0].parent
    text(f"workspace {root} over the shipped configs {base}:")
    for path in made:
        text(f"  {path.relative_to(root)}{'/' if path.is_dir() else ''}")
    _init_git(root / "configs")
    text("next (inside it, or with --workspace):")
    text(f"  cd {shlex.quote(str(root))}")  # a path with spaces, pasted into a shell
    text("  mlcore universe add-instrument AAPL --calendar xnys --asset-class equity --quote USD")
    text("  mlcore universe add-pair AAPL GOOG")
    text("  mlcore ingest --path AAPL_1h.csv --symbol AAPL --timeframe 1h")


def _init_git(configs: Path) -> None:
    """The configs/ folder as a git repository (governed changes, `mlcore configs`)."""
    from mlcore.config import read_workspace
    from mlcore.errors import MlcoreError
    from mlcore.governance import init_repo, policy_names

    try:
        init_repo(configs, policy_names(read_workspace(configs.parent)), "mlcore init")
    except MlcoreError as exc:  # no git: the workspace works, ungoverned until init-git
        text(f"note: configs/ not put under git ({exc.message}); `mlcore configs init-git` "
             "does it later")  # fmt: skip
        return
    text("  configs/.git (governed changes: `mlcore configs`)")


def _print_added(added: Added) -> None:
    text(f"added {added.what} to {added.file}:")
    for key, value in added.entries.items():
        shown = ", ".join(f"{k}: {v}" for k, v in value.items())
        text(f"  {key}: {{{shown}}}")
    if added.comments_dropped:
        text(f"note: {added.comments_dropped} comment line(s) of {added.file.name} were not kept "
             "(the file is rewritten; a note goes in an entry's description:)")  # fmt: skip


@command(universe_app, "add-instrument")
def add_instrument(
    symbol: Annotated[str, typer.Argument(help="Normalized symbol, e.g. AAPL or XAU/USD.")],
    calendar: Annotated[str, typer.Option(help="Trading calendar of universe.yaml.")],
    asset_class: Annotated[
        str, typer.Option(help="fx | metal | crypto | equity | index | commodity.")
    ],
    quote: Annotated[str, typer.Option(help="Quote currency, e.g. USD.")],
    tick_size: FloatOpt = None,
    lot_step: FloatOpt = None,
    min_lot: FloatOpt = None,
    min_notional_usd: FloatOpt = None,
    margin_rate: FloatOpt = None,
) -> None:
    """Add an instrument and its trading rules to the workspace's universe overlay."""
    from mlcore.config._universe_edit import add_instrument as add

    given = {
        "tick_size": tick_size, "lot_step": lot_step, "min_lot": min_lot,
        "min_notional_usd": min_notional_usd, "margin_rate": margin_rate,
    }  # fmt: skip
    overrides = {k: float(v) for k, v in given.items() if v is not None}
    _print_added(add(load_config(), symbol, calendar, asset_class, quote, overrides))


@command(universe_app, "add-pair")
def add_pair(
    leg_a: Annotated[str, typer.Argument(help="First leg (regressed on the second).")],
    leg_b: Annotated[str, typer.Argument(help="Second leg.")],
    pair_id: Annotated[
        str | None, typer.Option("--id", help="Pair id (default: A_B of the base symbols).")
    ] = None,
    timeframe: Annotated[
        list[str] | None,
        typer.Option(
            "--timeframe", parser=parse_timeframe, metavar="TF",
            help="A timeframe the pair trades at (repeat for more; default: any its legs "
            "have bars for). Spellings as for every --timeframe (1h, 1H, 1day, daily, ...).",
        ),
    ] = None,
) -> None:  # fmt: skip
    """Add a pair of two instruments of the universe to the workspace's universe overlay."""
    from mlcore.config._universe_edit import add_pair as add

    given = timeframe or []
    twice = sorted({t for t in given if given.count(t) > 1})
    if twice:
        raise ConfigError(
            "CLI_ARGUMENT_INVALID", f"--timeframe names {', '.join(twice)} more than once"
        )
    cfg = load_config()
    _print_added(add(cfg, leg_a, leg_b, pair_id, given or None))
    for tf in given:
        lacking = [f"{file} {key}" for file, key, table in (
            ("core_policy.yaml", "labels", cfg.core.labels),
            ("backtest_policy.yaml", "execution", cfg.backtest.execution),
        ) if tf not in table]  # fmt: skip
        if lacking:
            text(f"note: no {tf} entry in {' or '.join(lacking)} yet: training at {tf} is "
                 "refused until your workspace adds one (docs/features-and-labels.md)")  # fmt: skip
