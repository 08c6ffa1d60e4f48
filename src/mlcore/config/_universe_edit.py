"""``mlcore universe add-instrument`` / ``add-pair``: add to a workspace's own universe.yaml
overlay, after validating the whole merged configuration with the addition in place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlcore._flock import wait_for_flock
from mlcore.config._app import AppConfig, load_config
from mlcore.config._loader import MAX_POLICY_BYTES
from mlcore.config._schemas import ASSET_CLASSES, SYMBOL_RE, TradingRules
from mlcore.config._workspace import MARKER, UNIVERSE_HEADER, Workspace, write_text_atomic
from mlcore.errors import ConfigError, RetryableError

__all__ = ["Added", "add_instrument", "add_pair", "suggest_add_instrument", "symbol_form"]

EDIT_LOCK_WAIT_S = 60.0  # an edit takes about a second; a holder this long is stuck

_DESCRIPTIONS = {
    "instruments": "This workspace's instruments (added to the shipped ones).",
    "trading": "Trading rules of this workspace's instruments.",
    "pairs": "This workspace's pairs (merged with the shipped ones by pair_id).",
}


@dataclass(frozen=True)
class Added:
    """What a universe command wrote, and where."""

    file: Path
    what: str
    entries: dict[str, Any]
    #: comment lines of the file before, not kept by the rewrite (YAML round-trips lose them)
    comments_dropped: int = 0


# the last header line of workspaces made before the header said comments are not kept
_OLD_HEADER_LINE = (
    "# docs/workspace.md. `mlcore universe add-instrument` / `add-pair` edit this file."
)


def _comments(text: str) -> int:
    """How many lines of ``text`` below the header carry a comment (``#`` at a line's start or
    after a blank, outside quotes)."""  # PyYAML drops comments: they cannot be kept
    header = {*UNIVERSE_HEADER.splitlines(), _OLD_HEADER_LINE}
    lines = text.splitlines()
    while lines and lines[0] in header:
        lines.pop(0)
    count = 0
    for line in lines:
        quote = None
        for i, ch in enumerate(line):
            if quote is None and ch in "'\"":
                quote = ch
            elif ch == quote:
                quote = None
            elif quote is None and ch == "#" and (i == 0 or line[i - 1] in " \t"):
                count += 1
                break
    return count


def _refuse(code: str, message: str, **details: Any) -> ConfigError:
    return ConfigError(code, message, details=details)


def _overlay_text(ws: Workspace) -> tuple[Path, dict[str, Any], int]:
    path = ws.configs / "universe.yaml"
    if not path.exists():
        return path, {}, 0
    if path.stat().st_size > MAX_POLICY_BYTES:
        raise _refuse("CONFIG_FILE_UNREADABLE", f"{path}: larger than a policy file can be")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _refuse("CONFIG_YAML_INVALID", f"{path}: not valid YAML ({exc})".replace("\n", " "),
                      file=str(path)) from None  # fmt: skip
    if not isinstance(data, dict):
        raise _refuse("CONFIG_YAML_INVALID", f"{path}: top level must be a mapping of entries")
    return path, data, _comments(text)


def _entry(data: dict[str, Any], key: str, empty: Any) -> Any:
    entry = data.setdefault(key, {"value": empty, "description": _DESCRIPTIONS[key]})
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), type(empty)):
        raise _refuse("CONFIG_ENTRY_INVALID", f"universe.yaml overlay: key '{key}' is not an "
                      f"entry whose value is a {type(empty).__name__}", key=key)  # fmt: skip
    return entry["value"]


def _write_checked(ws: Workspace, path: Path, data: dict[str, Any], env: str | None) -> None:
    """Validate the whole configuration with ``data`` as the universe overlay (in a scratch
    copy of the workspace), then write it atomically."""
    text = UNIVERSE_HEADER + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )
    with tempfile.TemporaryDirectory(prefix="mlcore-check-") as scratch:
        copy = Path(scratch)
        shutil.copy2(ws.root / MARKER, copy / MARKER)
        shutil.copytree(ws.configs, copy / "configs")
        (copy / "configs" / "universe.yaml").write_text(text, encoding="utf-8")
        try:
            load_config(copy / "configs", env)
        except ConfigError as exc:
            message = exc.message.replace(str(copy / "configs"), str(ws.configs))
            raise ConfigError(exc.code, f"not written: {message}", details=exc.details) from None
    write_text_atomic(path, text)


def add_instrument(
    cfg: AppConfig, symbol: str, calendar: str, asset_class: str, quote: str,
    overrides: dict[str, float],
) -> Added:  # fmt: skip
    """Add ``symbol`` and its trading rules (the asset class's defaults from universe.yaml
    ``trading_defaults``, with ``overrides``) to the workspace's universe overlay."""
    ws = _need_workspace(cfg)
    uni = cfg.universe
    if not SYMBOL_RE.match(symbol):
        raise _refuse("CONFIG_SYMBOL_INVALID", f"symbol {symbol!r} is not a normalized symbol "
                      "(upper-case, like 'AAPL' or 'XAU/USD')", symbol=symbol)  # fmt: skip
    if symbol in uni.instruments:
        raise _refuse("CONFIG_INSTRUMENT_EXISTS", f"instrument {symbol!r} is already in the "
                      f"universe ({uni.instruments[symbol].asset_class}, calendar "
                      f"{uni.instruments[symbol].calendar})", symbol=symbol)  # fmt: skip
    if calendar not in uni.calendars:
        raise _refuse("CONFIG_CALENDAR_UNKNOWN", f"calendar {calendar!r} is not in the universe "
                      f"({sorted(uni.calendars)}); add it under calendars in "
                      f"{ws.configs / 'universe.yaml'}", calendar=calendar)  # fmt: skip
    if asset_class not in ASSET_CLASSES:
        raise _refuse("CONFIG_ASSET_CLASS_UNKNOWN", f"asset class {asset_class!r} is not one "
                      f"of {list(ASSET_CLASSES)}", asset_class=asset_class)  # fmt: skip
    default = uni.trading_defaults.get(asset_class)  # type: ignore[call-overload]
    rules = {**(default.model_dump() if default is not None else {}), **overrides}
    missing = sorted(set(TradingRules.model_fields) - set(rules))
    if missing:
        flags = ["--" + m.replace("_", "-") for m in missing]
        raise _refuse("CONFIG_TRADING_RULES_MISSING", f"universe.yaml trading_defaults has no "
                      f"{asset_class!r} entry: pass {flags}", asset_class=asset_class)  # fmt: skip
    inst = {"asset_class": asset_class, "calendar": calendar, "quote_currency": quote}
    with _edit_lock(ws):  # read, change and write the overlay as one step
        path, data, comments = _overlay_text(ws)
        if symbol in _entry(data, "instruments", {}):  # added since the config was loaded
            raise _refuse("CONFIG_INSTRUMENT_EXISTS", f"instrument {symbol!r} is already in "
                          f"{path}", symbol=symbol)  # fmt: skip
        _entry(data, "instruments", {})[symbol] = inst
        _entry(data, "trading", {})[symbol] = rules
        _write_checked(ws, path, data, cfg.env_name)
    return Added(path, f"instrument {symbol}", {"instrument": inst, "trading": rules}, comments)


def symbol_form(symbol: str, known: list[str]) -> str:
    """``xauusd``, ``XAU-USD``, ``xau_usd`` ... as the universe spells it (``XAU/USD``); a
    symbol the universe lacks comes back upper-cased, its separators as ``/`` (unchecked)."""
    s = symbol.strip().upper().replace("-", "/").replace("_", "/").replace(" ", "")
    if s not in known:
        compact = {k.replace("/", ""): k for k in known}
        s = compact.get(s.replace("/", ""), s)
    return s


def pair_id_of(leg_a: str, leg_b: str) -> str:
    """The default pair id: each leg's base symbol without dots, joined by '_'."""
    return "_".join(leg.split("/")[0].replace(".", "") for leg in (leg_a, leg_b))


def add_pair(
    cfg: AppConfig, leg_a: str, leg_b: str, pair_id: str | None,
    timeframes: list[str] | None = None,
) -> Added:  # fmt: skip
    """Add the pair ``leg_a``/``leg_b`` (traded at ``timeframes``, default any with bars) to
    the workspace's universe overlay."""
    ws = _need_workspace(cfg)
    uni = cfg.universe
    # Spelled as `ingest --symbol` takes them: `ko`, `xau-usd` are KO, XAU/USD.
    leg_a, leg_b = (symbol_form(leg, list(uni.instruments)) for leg in (leg_a, leg_b))
    for leg in (leg_a, leg_b):
        if leg not in uni.instruments:
            raise _refuse("CONFIG_INSTRUMENT_UNKNOWN", f"leg {leg!r} is not an instrument of the "
                          f"universe; add it first: {suggest_add_instrument(cfg, leg)}",
                          symbol=leg)  # fmt: skip
    if leg_a == leg_b:
        raise _refuse("CONFIG_PAIR_INVALID", f"a pair needs two legs, got {leg_a!r} twice")
    pid = pair_id if pair_id is not None else pair_id_of(leg_a, leg_b)
    for pair in uni.pairs:
        if pair.pair_id == pid:
            raise _refuse("CONFIG_PAIR_EXISTS", f"pair {pid!r} is already in the universe "
                          f"({pair.leg_a}, {pair.leg_b}); pass --id for another id",
                          pair_id=pid)  # fmt: skip
        if {pair.leg_a, pair.leg_b} == {leg_a, leg_b}:
            raise _refuse("CONFIG_PAIR_EXISTS", f"pair {pair.pair_id!r} already has the legs "
                          f"{leg_a!r} and {leg_b!r}; a pair is listed once",
                          pair_id=pid)  # fmt: skip
    entry: dict[str, object] = {"pair_id": pid, "leg_a": leg_a, "leg_b": leg_b}
    if timeframes:
        entry["timeframes"] = list(timeframes)  # one given twice: refused by the schema
    with _edit_lock(ws):  # a pair added since the config was loaded: refused by the schema
        path, data, comments = _overlay_text(ws)
        _entry(data, "pairs", []).append(entry)
        _write_checked(ws, path, data, cfg.env_name)
    return Added(path, f"pair {pid}", {"pair": entry}, comments)


@contextmanager
def _edit_lock(ws: Workspace, wait_s: float = EDIT_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the workspace's universe edit lock (an advisory ``flock``, released by the kernel
    if the holder dies): two commands at once each read the file and the last write lost
    the other's addition."""
    lock = ws.root / ".universe.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _refuse("CONFIG_WORKSPACE_REFUSED", f"{lock}: cannot be created: "
                      f"{exc.strerror or exc}", path=str(lock)) from None  # fmt: skip
    try:
        wait_for_flock(fd, wait_s, lambda: RetryableError(
            "CONFIG_WORKSPACE_BUSY",
            f"another `mlcore universe` command held {lock} for over {wait_s:g} s; try again "
            "when it is done",
        ))  # fmt: skip
        yield
    finally:
        os.close(fd)


def _need_workspace(cfg: AppConfig) -> Workspace:
    if cfg.workspace is not None and cfg.workspace.kind == "demo":
        raise _refuse(
            "CONFIG_WORKSPACE_NONE",
            f"{cfg.workspace.root} is the demo's workspace (kind: demo in its {MARKER}), made "
            "anew by each `mlcore demo` and never edited; `mlcore init DIR` makes one of yours",
        )
    if cfg.workspace is None:
        raise _refuse(
            "CONFIG_WORKSPACE_NONE",
            f"not in a workspace (config root {cfg.config_root} is the shipped one, never "
            "edited); `mlcore init DIR` makes one, then run this inside it or pass --workspace DIR",
        )
    return cfg.workspace


def suggest_add_instrument(cfg: AppConfig, symbol: str) -> str:
    """The command that adds ``symbol`` (calendar and asset class left for the user to pick)."""
    calendars = "|".join(sorted(cfg.universe.calendars))
    classes = "|".join(ASSET_CLASSES)
    return (
        f"`mlcore universe add-instrument {symbol} --calendar {{{calendars}}} "
        f"--asset-class {{{classes}}} --quote USD`"
    )
