"""Read a policy YAML from configs/base, apply the workspace overlay (when the config root is a
workspace's ``configs/``) then the env overlay, validate with its schema.

Layering: shipped ``base/{name}.yaml`` -> workspace ``configs/{name}.yaml`` ->
shipped ``envs/{env}/{name}.yaml``. The env overlay may only change keys the base defines. The
workspace overlay may also add: a mapping value is merged key by key (new instruments,
calendars, trading rules are added); a list of entries keyed by ``pair_id`` is merged by that
id (an entry with a new id is appended, one with a base id replaces it in place); any other
value replaces the base's. Every error names the file the offending key came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mlcore._files import FileRefused, read_regular_file
from mlcore.config._workspace import workspace_of
from mlcore.errors import ConfigError

ENVIRONMENTS = ("dev", "stg", "prod")
_ENTRY_KEYS = frozenset({"value", "description", "label_ja", "unit"})

M = TypeVar("M", bound=BaseModel)


MAX_POLICY_BYTES = 1 << 20  # a policy file is a few KB; anything this big is not one


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping: PyYAML keeps the last,
    so a second ``archive_path`` further down silently won."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base loader refuses it with its own words
            if first is not key_node:
                line = first.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {str(key)[:60]!r} given twice (first on line {line})",
                    key_node.start_mark,
                )  # fmt: skip
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = read_regular_file(path, MAX_POLICY_BYTES)
    except FileRefused as exc:
        raise ConfigError("CONFIG_FILE_UNREADABLE", str(exc), details={"file": str(path)}) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "CONFIG_FILE_UNREADABLE",
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); is it a binary file?",
            details={"file": str(path)},
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except RecursionError:
        raise ConfigError("CONFIG_YAML_INVALID", f"{path}: not valid YAML (nested too deeply)",
                          details={"file": str(path)}) from None  # fmt: skip
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            "CONFIG_YAML_INVALID",
            f"{path}:{where}: not valid YAML ({problem})",
            details={"file": str(path)},
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "CONFIG_YAML_INVALID",
            f"{path}: top level must be a mapping of entries, got {type(data).__name__}",
            details={"file": str(path)},
        )
    return data


def _check_entries(path: Path, data: Mapping[str, Any]) -> None:
    for key, entry in data.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise ConfigError(
                "CONFIG_ENTRY_INVALID",
                f"{path}: key '{key}': must be an entry {{value: ..., description: ...}}",
                details={"file": str(path), "key": str(key)},
            )
        extra = set(entry) - _ENTRY_KEYS
        if extra:
            raise ConfigError(
                "CONFIG_ENTRY_INVALID",
                f"{path}: key '{key}': unknown entry field(s) {sorted(extra)}; "
                f"allowed: {sorted(_ENTRY_KEYS)}",
                details={"file": str(path), "key": str(key)},
            )


def _merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for k, v in overlay.items():
            merged[k] = _merge(base[k], v) if k in base else v
        return merged
    return overlay


def _keyed(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and "pair_id" in v for v in value)


def _extend(base: Any, overlay: Any) -> Any:
    """A workspace overlay on a base value: mappings merged (new keys added), lists of
    ``pair_id`` entries merged by id (same id replaces, new id appended), else replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for k, v in overlay.items():
            merged[k] = _extend(base[k], v) if k in base else v
        return merged
    if _keyed(base) and _keyed(overlay) and base:
        out = list(base)
        at = {entry["pair_id"]: i for i, entry in enumerate(out)}
        for entry in overlay:
            # An id replaces the base's entry once; an id the overlay repeats is appended, so
            # the schema refuses the pair listed twice instead of the first entry vanishing.
            i = at.pop(entry["pair_id"], None)
            if i is None:
                out.append(entry)
            else:
                out[i] = entry
        return out
    return overlay


def _touched(key: str, base: Any, overlay: Any, merged: Any) -> list[tuple[int | str, ...]]:
    """The value paths a workspace overlay set (for naming its file in errors)."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return [(key, k) for k in overlay]
    if _keyed(base) and _keyed(overlay) and base:
        ids = {entry["pair_id"] for entry in overlay}
        return [(key, i) for i, entry in enumerate(merged) if entry["pair_id"] in ids]
    return [(key,)]


def _apply_workspace(
    path: Path, base: Mapping[str, Any], base_path: Path, merged: dict[str, Any],
    source: dict[tuple[int | str, ...], Path],
) -> None:  # fmt: skip
    data = _read_yaml(path)
    _check_entries(path, data)
    for key, entry in data.items():
        if key not in base:
            raise ConfigError(
                "CONFIG_WORKSPACE_UNKNOWN_KEY",
                f"{path}: key '{key}': not defined in {base_path}; a workspace overlay adds "
                "inside the base's keys (instruments, pairs, ...), not new top-level keys",
                details={"file": str(path), "key": key},
            )
        new_value = _extend(merged[key], entry["value"])
        for loc in _touched(key, merged[key], entry["value"], new_value):
            source[loc] = path
        merged[key] = new_value


def _apply_env(
    overlay_path: Path, base: Mapping[str, Any], base_path: Path, merged: dict[str, Any],
    source: dict[tuple[int | str, ...], Path],
) -> None:  # fmt: skip
    overlay = _read_yaml(overlay_path)
    _check_entries(overlay_path, overlay)
    for key, entry in overlay.items():
        if key not in base:
            raise ConfigError(
                "CONFIG_OVERLAY_UNKNOWN_KEY",
                f"{overlay_path}: key '{key}': not defined in {base_path}; "
                "overlays may only change keys the base defines",
                details={"file": str(overlay_path), "key": key},
            )
        new_value = _merge(merged[key], entry["value"])
        # Redundant against the shipped base alone: a workspace that set the env overlay's
        # value must not make the shipped env file an error the user cannot fix.
        shipped = base[key]["value"]
        if _merge(shipped, entry["value"]) == shipped:
            raise ConfigError(
                "CONFIG_OVERLAY_REDUNDANT",
                f"{overlay_path}: key '{key}': repeats the base value; "
                "overlays hold only differences",
                details={"file": str(overlay_path), "key": key},
            )
        merged[key] = new_value
        source[(key,)] = overlay_path
        for loc in [loc for loc in source if len(loc) > 1 and loc[0] == key]:
            del source[loc]


def _file_of(
    loc: tuple[int | str, ...], source: dict[tuple[int | str, ...], Path], default: Path
) -> Path:
    for n in (2, 1):
        if len(loc) >= n and loc[:n] in source:
            return source[loc[:n]]
    return default


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def load_policy(config_root: Path, name: str, env: str, schema: type[M]) -> M:
    """Load ``configs/base/{name}.yaml`` with the ``envs/{env}`` overlay and validate it.

    When ``config_root`` is a workspace's ``configs/``, the base and env overlay are those of
    the shipped configs its marker names, and its own ``{name}.yaml`` goes between them.

    Raises
    ------
    ConfigError
        Naming the file, the key and the problem, for any missing file, bad YAML,
        unknown or missing key, wrong type or out-of-range value.
    """
    if env not in ENVIRONMENTS:
        raise ConfigError(
            "CONFIG_ENV_UNKNOWN",
            f"environment {env!r} is not one of {list(ENVIRONMENTS)}",
            details={"env": env},
        )
    workspace = workspace_of(config_root)
    shipped = workspace.base_root if workspace is not None else config_root
    base_path = shipped / "base" / f"{name}.yaml"
    overlay_path = shipped / "envs" / env / f"{name}.yaml"
    base = _read_yaml(base_path)
    _check_entries(base_path, base)
    source: dict[tuple[int | str, ...], Path] = {(key,): base_path for key in base}
    merged = {key: entry["value"] for key, entry in base.items()}
    # A whole-policy error (no key of its own) is the newest layer's doing: the base alone passes.
    whole = base_path
    ws_path = config_root / f"{name}.yaml"
    if workspace is not None and ws_path.exists():
        _apply_workspace(ws_path, base, base_path, merged, source)
        whole = ws_path
    if overlay_path.exists():
        _apply_env(overlay_path, base, base_path, merged, source)
    try:
        return schema.model_validate(merged)
    except RecursionError:  # a YAML alias that contains itself
        raise ConfigError("CONFIG_YAML_INVALID",
                          f"{base_path} or its overlays: a value refers to itself (YAML alias)",
                          details={"file": str(base_path)}) from None  # fmt: skip
    except ValidationError as exc:
        problems = []
        first_file = base_path
        for i, err in enumerate(exc.errors()):
            loc = err["loc"]
            file = _file_of(tuple(loc), source, whole)
            if i == 0:
                first_file = file
            shown = repr(err.get("input"))
            shown = shown if len(shown) <= 120 else f"{shown[:117]}..."  # an alias bomb's size
            if not loc:  # a check of the file as a whole: its input is the whole file
                problems.append(f"{file}: {err['msg'].removeprefix('Value error, ')}")
                continue
            got = "" if err["type"] == "missing" else f" (got {shown})"
            problems.append(f"{file}: key '{_format_loc(loc)}': {err['msg']}{got}")
        raise ConfigError(
            "CONFIG_SCHEMA_INVALID",
            "; ".join(problems),
            details={"file": str(first_file), "problems": problems},
        ) from None


def _leaves(value: Any, at: tuple[str, ...]) -> dict[tuple[str, ...], Any]:
    if isinstance(value, dict) and value:
        out: dict[tuple[str, ...], Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, (*at, str(k))))
        return out
    return {at: value}


def env_shadowed(config_root: Path, env: str) -> list[str]:
    """What a workspace overlay sets that the shipped env overlay (applied last) sets again to
    another value: the workspace's value is not the one in force in ``env``. Empty outside a
    workspace. The files were validated by :func:`load_policy` already."""
    workspace = workspace_of(config_root)
    if workspace is None:
        return []
    said = []
    for ws_path in sorted(config_root.glob("*.yaml")):
        env_path = workspace.base_root / "envs" / env / ws_path.name
        if not env_path.exists():
            continue
        mine, theirs = _read_yaml(ws_path), _read_yaml(env_path)
        for key in sorted(set(mine) & set(theirs)):
            ours = _leaves(mine[key]["value"], (str(key),))
            final = _leaves(theirs[key]["value"], (str(key),))
            for loc in sorted(set(ours) & set(final)):
                if ours[loc] != final[loc]:
                    said.append(
                        f"{ws_path.name}: {'.'.join(loc)} = {ours[loc]!r} is not in force in "
                        f"{env}: {env_path} (applied last) sets {final[loc]!r}"
                    )
    return said
