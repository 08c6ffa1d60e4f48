"""Validation of a proposed config change: its file names, sizes and encodings, each file with
its real schema (strict: unknown keys refused), the whole would-be configuration with
``load_config`` (cross-file consistency), and a risk rating per file."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlcore.config._app import load_config
from mlcore.config._loader import load_policy
from mlcore.config._schemas import POLICY_SCHEMAS
from mlcore.config._workspace import FORMAT_VERSION, MARKER, Workspace
from mlcore.errors import ConfigError, shown
from mlcore.governance._risk import Risk, changed_keys, highest, rate

MAX_CHANGE_BYTES = 256 * 1024  # a policy overlay is a few KB
MAX_CHANGE_FILES = 32
MAX_DEPTH = 32  # a policy file nests six levels at most


@dataclass(frozen=True)
class Problem:
    """One reason a change is refused: the file, the key (if one), the code and what is wrong."""

    file: str
    key: str | None
    code: str
    message: str


@dataclass(frozen=True)
class FileChange:
    """One changed file: the keys whose values change and its risk rating."""

    file: str
    keys: tuple[str, ...]
    risk: Risk


@dataclass(frozen=True)
class ValidationReport:
    """What validation found; ``ok`` when there are no problems."""

    problems: tuple[Problem, ...] = ()
    changes: tuple[FileChange, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def risk(self) -> Risk:
        """The change's rating: the highest of its files'."""
        return highest([c.risk for c in self.changes])

    def raise_if_invalid(self) -> None:
        """ConfigError ``CONFIG_GOV_INVALID`` naming every problem, if there is one."""
        if self.problems:
            first = self.problems[0]
            raise ConfigError(
                "CONFIG_GOV_INVALID",
                "; ".join(p.message for p in self.problems),
                details={"file": first.file, "key": first.key,
                         "problems": [p.__dict__ for p in self.problems]},
            )  # fmt: skip


def policy_names(workspace: Workspace) -> frozenset[str]:
    """The file names a workspace overlay may have: those of the shipped base."""
    return frozenset(p.name for p in (workspace.base_root / "base").glob("*.yaml"))


def _shape_problem(text: str) -> str | None:
    """Anchors and aliases (a YAML bomb's means) and nesting deeper than MAX_DEPTH, found from
    the parser's events before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else "?"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return (f"line {line}: YAML anchors and aliases are not accepted in a governed "
                    "change (write each value out)")  # fmt: skip
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return f"line {line}: nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _parse(name: str, body: bytes) -> tuple[dict[str, Any] | None, Problem | None]:
    """The file's YAML mapping, or the problem that refuses it."""

    def bad(code: str, why: str) -> tuple[None, Problem]:
        return None, Problem(name, None, code, f"{name}: {why}")

    if len(body) > MAX_CHANGE_BYTES:
        size = f"{len(body):,} bytes, over the {MAX_CHANGE_BYTES:,} a policy file may have"
        return bad("CONFIG_GOV_FILE_TOO_LARGE", size)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return bad("CONFIG_FILE_UNREADABLE", f"not UTF-8 text (byte {exc.start}: {exc.reason})")
    try:
        shape = _shape_problem(text)
        if shape is not None:
            return bad("CONFIG_YAML_INVALID", shape)
        data = yaml.safe_load(text)
    except RecursionError:
        return bad("CONFIG_YAML_INVALID", "not valid YAML (nested too deeply)")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        why = " ".join(str(getattr(exc, "problem", None) or exc).split())[:200]  # one line
        return bad("CONFIG_YAML_INVALID", f"{where}not valid YAML ({why})")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        got = type(data).__name__
        return bad("CONFIG_YAML_INVALID", f"top level must be a mapping of entries, got {got}")
    return data, None


def _name_problem(name: object, names: frozenset[str]) -> Problem | None:
    if isinstance(name, str) and name in names:
        return None
    text = shown(name, 80)
    if isinstance(name, str) and ("/" in name or "\\" in name or name.startswith(".")):
        why = "is a path; a change names policy files only (e.g. universe.yaml)"
    else:
        why = f"is not one of the policy files {sorted(names)}"
    return Problem(text, None, "CONFIG_GOV_FILE_REFUSED", f"file name {text} {why}")


def _error_problem(exc: ConfigError, tmp: Path, fallback: str) -> Problem:
    message = exc.message.replace(f"{tmp}/", "proposed ").replace(str(tmp), "proposed configs")
    file = Path(str(exc.details.get("file", fallback))).name
    key = exc.details.get("key")
    return Problem(file, None if key is None else str(key), exc.code, message)


def _parse_all(
    files: Mapping[str, bytes], names: frozenset[str], problems: list[Problem]
) -> dict[str, dict[str, Any]]:
    """Each file's mapping; a refused name, size, encoding or YAML goes to ``problems``."""
    parsed: dict[str, dict[str, Any]] = {}
    for name, body in files.items():
        refused = _name_problem(name, names)
        if refused is None and not isinstance(body, bytes):
            refused = Problem(name, None, "CONFIG_GOV_FILE_REFUSED", f"{name}: content not bytes")
        if refused is None:
            data, refused = _parse(name, body)
            if data is not None:
                parsed[name] = data
        if refused is not None:
            problems.append(refused)
    return parsed


def check_tree(
    workspace: Workspace, env_name: str, base: Mapping[str, bytes], files: Mapping[str, bytes],
) -> ValidationReport:  # fmt: skip
    """Validate ``files`` laid over the committed ``base`` tree (see the module docstring)."""
    names = policy_names(workspace)
    problems: list[Problem] = []
    if not files:
        problems.append(Problem("-", None, "CONFIG_GOV_NO_CHANGE", "the change holds no file"))
    if len(files) > MAX_CHANGE_FILES:
        many = f"{len(files)} files, over the {MAX_CHANGE_FILES} a change may hold"
        problems.append(Problem("-", None, "CONFIG_GOV_FILE_REFUSED", many))
        return ValidationReport(tuple(problems))
    parsed = _parse_all(files, names, problems)
    if problems:
        return ValidationReport(tuple(problems))
    changes = []
    for name, data in sorted(parsed.items()):
        old = yaml.safe_load(base[name].decode("utf-8")) or {} if name in base else {}
        keys = changed_keys(old if isinstance(old, dict) else {}, data)
        if base.get(name) == files[name]:
            problems.append(Problem(name, None, "CONFIG_GOV_NO_CHANGE",
                                    f"{name}: the same bytes as the committed file"))  # fmt: skip
        changes.append(FileChange(name, tuple(keys), rate(name, keys)))
    problems += _load_problems(workspace, env_name, {**base, **files}, sorted(files))
    return ValidationReport(tuple(problems), tuple(changes))


def check_loads(workspace: Workspace, env_name: str, tree: Mapping[str, bytes]) -> ValidationReport:
    """Whether a whole committed tree loads (each file, then ``load_config``)."""
    return ValidationReport(tuple(_load_problems(workspace, env_name, tree, sorted(tree))))


def _load_problems(
    workspace: Workspace, env_name: str, tree: Mapping[str, bytes], check: list[str]
) -> list[Problem]:
    """Each file of ``check`` loaded with its schema, then the whole tree with load_config,
    from a temporary workspace over the same shipped configs."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="mlcore-gov-") as tmp_dir:
        tmp = Path(tmp_dir) / "configs"
        tmp.mkdir()
        (tmp.parent / MARKER).write_text(yaml.safe_dump({
            "format_version": FORMAT_VERSION, "kind": workspace.kind,
            "base_config_root": str(workspace.base_root),
        }))  # fmt: skip
        for name, body in tree.items():
            (tmp / name).write_bytes(body)
        for name in check:
            stem = name.removesuffix(".yaml")
            try:
                load_policy(tmp, stem, env_name, POLICY_SCHEMAS[stem])
            except ConfigError as exc:
                problems.append(_error_problem(exc, tmp, name))
        if not problems:
            try:
                load_config(tmp, env_name)
            except ConfigError as exc:
                problems.append(_error_problem(exc, tmp, "-"))
    return problems
