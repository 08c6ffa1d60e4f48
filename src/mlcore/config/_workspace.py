"""A workspace: a folder of one's own with a marker file, ``configs/`` (overlays on the shipped
base configs, which may add instruments, calendars, trading rules and pairs), ``archive/``
(its ARCHIVE) and a short README.

The marker, ``mlcore-workspace.yaml``, names the shipped configs folder (holding ``base/`` and
``envs/``) the workspace overlays, by absolute path recorded at ``mlcore init`` time, and the
marker's format version. A command finds its workspace from ``--workspace``/``MLCORE_WORKSPACE``
or by walking up from the working folder to a marker (see docs/workspace.md).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from mlcore._files import FileRefused, read_regular_file
from mlcore.errors import ConfigError

__all__ = [
    "FORMAT_VERSION",
    "MARKER",
    "UNIVERSE_HEADER",
    "Workspace",
    "find_workspace",
    "fresh_demo_workspace",
    "init_workspace",
    "read_workspace",
    "workspace_of",
    "write_text_atomic",
]

MARKER = "mlcore-workspace.yaml"
FORMAT_VERSION = 1
Kind = Literal["user", "demo"]
_MAX_MARKER_BYTES = 64 * 1024
_MARKER_HEADER = "# mlcore workspace marker (docs/workspace.md)\n"


@dataclass(frozen=True)
class Workspace:
    """A workspace folder and the shipped configs folder its overlays sit on."""

    root: Path
    base_root: Path
    kind: Kind

    @property
    def configs(self) -> Path:
        """The folder of the workspace's own overlay YAMLs."""
        return self.root / "configs"

    @property
    def archive(self) -> Path:
        """The workspace's own archive folder."""
        return self.root / "archive"


def _bad(path: Path, why: str) -> ConfigError:
    return ConfigError(
        "CONFIG_WORKSPACE_INVALID", f"{path}: {why}; `mlcore init DIR` writes a valid one",
        details={"file": str(path)},
    )  # fmt: skip


def read_workspace(root: Path) -> Workspace:
    """The workspace at ``root`` (a folder holding the marker), its base checked present."""
    path = root / MARKER
    try:
        data = yaml.safe_load(read_regular_file(path, _MAX_MARKER_BYTES).decode("utf-8"))
    except FileRefused as exc:
        if os.path.lexists(path):  # there, but too big, a folder, a device, unreadable
            raise _bad(path, str(exc).removeprefix(f"{path}: ")) from None
        raise ConfigError(
            "CONFIG_WORKSPACE_MISSING",
            f"{root} is not a workspace ({exc}); `mlcore init {shlex.quote(str(root))}` makes one",
            details={"file": str(path)},
        ) from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise _bad(path, "not a valid YAML marker") from None
    if not isinstance(data, dict) or set(data) != {"format_version", "kind", "base_config_root"}:
        raise _bad(path, "must hold exactly format_version, kind and base_config_root")
    if type(data["format_version"]) is not int or data["format_version"] != FORMAT_VERSION:
        raise _bad(path, f"format_version {data['format_version']!r} is not {FORMAT_VERSION}")
    if data["kind"] not in ("user", "demo"):
        raise _bad(path, f"kind {data['kind']!r} is not user or demo")
    base = data["base_config_root"]
    if not isinstance(base, str) or not Path(base).is_absolute():
        raise _bad(path, "base_config_root must be an absolute path")
    if not _is_dir(Path(base) / "base"):
        raise ConfigError(
            "CONFIG_WORKSPACE_BASE_MISSING",
            f"{path}: base_config_root {base} has no base/ folder of policy files (moved or "
            "deleted?); set base_config_root to the project's configs/ folder",
            details={"file": str(path), "key": "base_config_root"},
        )
    return Workspace(root=root.resolve(), base_root=Path(base), kind=data["kind"])


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False for a path the OS cannot even look up (a name too long)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def workspace_of(config_root: Path) -> Workspace | None:
    """The workspace whose ``configs/`` folder ``config_root`` is (None for a shipped root)."""
    if config_root.name == "configs" and (config_root.parent / MARKER).is_file():
        return read_workspace(config_root.parent)
    return None


def find_workspace(start: Path | None = None) -> Path | None:
    """The nearest folder holding a workspace marker, from ``start`` (cwd) upwards."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / MARKER).is_file():
            return d
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_STORAGE = """\
# storage.yaml overlay of this workspace: its archive is its own (ENV ARCHIVE_PATH overrides).
archive_path:
  value: archive
  description: This workspace's archive (relative to the workspace folder).
"""

UNIVERSE_HEADER = """\
# universe.yaml overlay of this workspace. New instruments, calendars, trading rules and pairs
# are added to the shipped ones (a pair with a shipped pair_id replaces it); see
# docs/workspace.md. `mlcore universe add-instrument` / `add-pair` rewrite this file: comments
# below this header are not kept (a note goes in an entry's description:).
"""

_README = """\
# mlcore workspace

Made by `mlcore init`. Every `mlcore` command run in this folder (or below it, or with
`--workspace {root}`) uses it:

- `configs/`: this workspace's overlays on the shipped configs at `{base}` (one YAML per
  policy file, same `{{key: {{value:, description:}}}}` entries; may add instruments, calendars,
  trading rules and pairs).
- `archive/`: this workspace's archive (ingested bars, catalog, features, models, reports).
- `mlcore-workspace.yaml`: the marker (format version, shipped configs folder).

Next:

    mlcore universe add-instrument AAPL --calendar xnys --asset-class equity --quote USD
    mlcore universe add-pair AAPL GOOG
    mlcore ingest --path AAPL_1h.csv --symbol AAPL --timeframe 1h
    mlcore config check

See docs/workspace.md of ml-assets-core for the layering rules and the trading-rule defaults.
"""


def init_workspace(folder: Path, base_root: Path, kind: Kind = "user") -> list[Path]:
    """Make a workspace at ``folder`` (missing or empty) over the shipped configs
    ``base_root``; return what was made. Refuses (ConfigError) a folder already holding a
    workspace or anything else."""
    folder = folder.resolve()
    try:
        _check_empty(folder)
    except OSError as exc:  # a name too long, a folder that cannot be listed
        raise _os_refusal(folder, exc) from None
    base_root = base_root.resolve()
    if not (base_root / "base").is_dir():
        raise ConfigError("CONFIG_ROOT_MISSING", f"{base_root} has no base/ folder of policy files",
                          details={"path": str(base_root)})  # fmt: skip
    _refuse_inside(folder, kind)
    configs = folder / "configs"
    marker = yaml.safe_dump(
        {"format_version": FORMAT_VERSION, "kind": kind, "base_config_root": str(base_root)},
        sort_keys=False,
    )
    made = {
        configs / "storage.yaml": _STORAGE,
        configs / "universe.yaml": UNIVERSE_HEADER,
        folder / "README.md": _README.format(root=shlex.quote(str(folder)), base=base_root),
    }
    existed = folder.is_dir()
    try:
        configs.mkdir(parents=True, exist_ok=True)
        (folder / "archive").mkdir(exist_ok=True)
        for path, text in made.items():
            write_text_atomic(path, text)
        write_text_atomic(folder / MARKER, f"{_MARKER_HEADER}{marker}")
    except OSError as exc:
        # Never half a workspace: what was made goes (the folder too, when init made it).
        for path in (folder / MARKER, *made):
            if path.is_file():
                path.unlink()
        for sub in (configs, folder / "archive", *([] if existed else [folder])):
            with contextlib.suppress(OSError):
                sub.rmdir()
        raise _os_refusal(folder, exc) from None
    return [folder / MARKER, *made, folder / "archive"]


def _check_empty(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError("CONFIG_WORKSPACE_REFUSED", f"{folder} is a file, not a folder",
                          details={"path": str(folder)})  # fmt: skip
    if (folder / MARKER).exists():
        raise ConfigError(
            "CONFIG_WORKSPACE_REFUSED", f"{folder} already holds a workspace ({MARKER})",
            details={"path": str(folder)},
        )  # fmt: skip
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(
            "CONFIG_WORKSPACE_REFUSED",
            f"{folder} is not empty; a workspace is made in a new or empty folder",
            details={"path": str(folder)},
        )


def _os_refusal(folder: Path, exc: OSError) -> ConfigError:
    where = "" if exc.filename in (None, str(folder)) else f" ({exc.filename})"
    return ConfigError(
        "CONFIG_WORKSPACE_REFUSED",
        f"{folder}: cannot make a workspace there: {exc.strerror or exc}{where}",
        details={"path": str(folder)},
    )


def _refuse_inside(folder: Path, kind: Kind) -> None:
    """Refuse a workspace inside a shipped configs folder, inside another workspace's
    ``configs/`` or ``archive/`` (it would break that workspace or be taken for its data), or
    inside a demo workspace (each demo run removes it)."""
    for d in folder.parents:
        if _is_dir(d / "envs") and (d / "base" / "universe.yaml").is_file():
            why = f"inside the shipped configs folder {d}"
        elif (d / MARKER).is_file() and kind == "user":
            part = folder.relative_to(d).parts[0]
            if part in ("configs", "archive"):
                why = f"inside the {part}/ folder of the workspace {d}"
            elif _marker_kind(d) == "demo":
                why = f"inside the demo's workspace {d} (each `mlcore demo` makes it anew)"
            else:
                continue
        else:
            continue
        raise ConfigError(
            "CONFIG_WORKSPACE_REFUSED",
            f"{folder} is {why}; make a workspace in a folder of its own",
            details={"path": str(folder)},
        )


def _marker_kind(root: Path) -> str | None:
    try:
        return read_workspace(root).kind
    except ConfigError:
        return None


def fresh_demo_workspace(base_root: Path) -> Workspace:
    """The demo's own workspace, ``var/demo`` of the project holding ``base_root``, made anew
    (the previous demo workspace is removed; any other content there is refused)."""
    folder = base_root.resolve().parent / "var" / "demo"
    marker = folder / MARKER
    if marker.is_file():
        if read_workspace(folder).kind != "demo":
            raise ConfigError(
                "CONFIG_WORKSPACE_REFUSED",
                f"{folder} holds a user workspace; the demo runs only in a demo workspace",
                details={"path": str(folder)},
            )
        shutil.rmtree(folder)
    init_workspace(folder, base_root, kind="demo")
    return read_workspace(folder)
