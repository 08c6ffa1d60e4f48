"""Read a policy YAML from configs/base, apply the env overlay, validate with its schema."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mlcore._files import FileRefused, read_regular_file
from mlcore.errors import ConfigError

ENVIRONMENTS = ("dev", "stg", "prod")
_ENTRY_KEYS = frozenset({"value", "description", "label_ja", "unit"})

M = TypeVar("M", bound=BaseModel)


MAX_POLICY_BYTES = 1 << 20  # a policy file is a few KB; anything this big is not one


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
        data = yaml.safe_load(text)
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


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def load_policy(config_root: Path, name: str, env: str, schema: type[M]) -> M:
    """Load ``configs/base/{name}.yaml`` with the ``envs/{env}`` overlay and validate it.

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
    base_path = config_root / "base" / f"{name}.yaml"
    overlay_path = config_root / "envs" / env / f"{name}.yaml"
    base = _read_yaml(base_path)
    _check_entries(base_path, base)
    source = {key: base_path for key in base}
    merged = {key: entry["value"] for key, entry in base.items()}
    if overlay_path.exists():
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
            if new_value == merged[key]:
                raise ConfigError(
                    "CONFIG_OVERLAY_REDUNDANT",
                    f"{overlay_path}: key '{key}': repeats the base value; "
                    "overlays hold only differences",
                    details={"file": str(overlay_path), "key": key},
                )
            merged[key] = new_value
            source[key] = overlay_path
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
            top = str(loc[0]) if loc else ""
            file = source.get(top, base_path)
            if i == 0:
                first_file = file
            shown = repr(err.get("input"))
            shown = shown if len(shown) <= 120 else f"{shown[:117]}..."  # an alias bomb's size
            got = "" if err["type"] == "missing" else f" (got {shown})"
            problems.append(f"{file}: key '{_format_loc(loc)}': {err['msg']}{got}")
        raise ConfigError(
            "CONFIG_SCHEMA_INVALID",
            "; ".join(problems),
            details={"file": str(first_file), "problems": problems},
        ) from None
