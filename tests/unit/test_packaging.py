"""pyproject.toml, the lock files and the code agree: every import is declared, every declared
runtime package is imported (or says why not), and the locks are compiled from pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

PROJECT = canonicalize_name("ml-assets-core")
# Declared for a reason other than an import in src/ (each says which).
NOT_IMPORTED = {
    "hiredis": "redis-py's C parser, picked up by redis when installed",
    "psycopg": "SQLAlchemy's PostgreSQL driver (postgresql+psycopg://)",
    "pyyaml": "imported as yaml",  # name differs; checked through packages_distributions too
}


@cache
def _project() -> dict[str, object]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return dict(data["project"])


def _declared(extra: str | None = None) -> dict[str, Requirement]:
    reqs = _project()["dependencies"] if extra is None else _project()["optional-dependencies"]
    items = reqs if extra is None else reqs[extra]  # type: ignore[index]
    return {canonicalize_name(r.name): r for r in map(Requirement, items)}  # type: ignore[arg-type]


def _lock(name: str) -> tuple[dict[str, Version], dict[str, set[str]]]:
    """Pins and the ``# via`` sources of each pin in requirements/<name>."""
    pins: dict[str, Version] = {}
    via: dict[str, set[str]] = {}
    current = ""
    for line in (REPO / "requirements" / name).read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line):
            current = canonicalize_name(m.group(1))
            pins[current] = Version(m.group(3))
            via[current] = set()
        elif m := re.match(r"^\s+#\s+(?:via\s+)?(\S.*)$", line):
            source = m.group(1).strip()
            if source != "via":
                via[current].add(source)
    return pins, via


def _sources(via: set[str]) -> set[str]:
    out = set()
    for s in via:
        if s.startswith("-c "):
            continue
        out.add(PROJECT if "pyproject.toml" in s else canonicalize_name(s.split()[0]))
    return out


@pytest.mark.parametrize(("lock", "extras"), [("lock.txt", ()), ("lock-dev.txt", ("dev",))])
def test_lock_is_compiled_from_pyproject(lock: str, extras: tuple[str, ...]) -> None:
    """Every declared package is pinned inside its range; every pin is needed by a declared
    package, directly or through others (a stale pin fails here); nothing else is direct."""
    declared = _declared() | {k: v for e in extras for k, v in _declared(e).items()}
    pins, via = _lock(lock)
    hint = "run `make lock` after changing pyproject.toml"
    for name, req in declared.items():
        assert name in pins, (
            f"{name} is declared in pyproject.toml but not pinned in {lock}; {hint}"
        )
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside pyproject's {req.specifier}; {hint}"
        )
    direct = {n for n, v in via.items() if PROJECT in _sources(v)}
    assert direct == set(declared), f"{lock}'s direct pins differ from pyproject.toml; {hint}"
    reached, todo = set(direct), list(direct)
    needed_by: dict[str, set[str]] = {}
    for name, v in via.items():
        for src in _sources(v) - {PROJECT}:
            needed_by.setdefault(src, set()).add(name)
    while todo:
        for dep in needed_by.get(todo.pop(), set()) - reached:
            reached.add(dep)
            todo.append(dep)
    assert set(pins) == reached, f"{lock} pins what nothing needs: {set(pins) - reached}; {hint}"


def test_dev_lock_holds_the_runtime_pins() -> None:
    runtime, _ = _lock("lock.txt")
    dev, _ = _lock("lock-dev.txt")
    differ = {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v}
    assert not differ, f"lock-dev.txt must keep lock.txt's pins: {differ}"


def _imports(folder: Path) -> dict[str, str]:
    """Top-level third-party modules imported under ``folder`` -> one file importing each."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("mlcore", "tests"):
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


@cache
def _module_owners() -> dict[str, list[str]]:
    return packages_distributions()


def _distributions(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _module_owners().get(module, [])}


@pytest.mark.parametrize(
    ("folder", "extras"), [("src", ()), ("tests", ("dev",)), ("benchmarks", ("dev",))]
)
def test_every_import_is_declared(folder: str, extras: tuple[str, ...]) -> None:
    declared = set(_declared()) | {k for e in extras for k in _declared(e)}
    missing = {
        f"{module} ({where}, from {sorted(_distributions(module)) or '?'})"
        for module, where in _imports(REPO / folder).items()
        if not _distributions(module) & declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_every_runtime_package_is_imported() -> None:
    """The runtime install holds what the code imports: a package comes in with its code."""
    imported = {d for m in _imports(REPO / "src") for d in _distributions(m)}
    unused = set(_declared()) - imported - set(NOT_IMPORTED)
    assert not unused, f"declared in pyproject.toml but imported nowhere in src/: {unused}"
