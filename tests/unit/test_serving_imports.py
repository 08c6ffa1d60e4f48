"""The live side stays light and apart from research: importing its packages in a fresh
process loads no research library, and no module of serving/, signals/, execution/, ops/ or
observability/ imports backtest/, training/ or flows/ (at the top or inside a function)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mlcore"
LIVE = ("serving", "signals", "execution", "ops", "observability")
RESEARCH = ("mlcore.backtest", "mlcore.training", "mlcore.flows")
# Research libraries, and the research stages themselves, that a worker must not load.
HEAVY = ("plotly", "optuna", "sklearn", "alembic", "prefect", "imblearn", *RESEARCH)
LIVE_PACKAGES = ("mlcore.serving", "mlcore.signals", "mlcore.execution", "mlcore.ops",
                 "mlcore.observability")  # fmt: skip


def _loaded_after(statement: str, env: dict[str, str]) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return set(json.loads(out.stdout.splitlines()[-1]))


def _present(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def test_live_import_loads_no_research_library(tmp_path: Path) -> None:
    # One process for the five: what importing a package loads does not depend on what was
    # loaded before, so the union is clean exactly when each package's closure is.
    # The workers build their collectors at import: a metrics folder set but missing (a CI run
    # had inherited a deleted one) is made rather than a traceback from prometheus_client.
    folder = tmp_path / "gone" / "metrics"
    loaded = _loaded_after(
        "import " + ", ".join(LIVE_PACKAGES), {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    )
    assert set(LIVE_PACKAGES) <= loaded
    assert _present(loaded, HEAVY) == []
    # The boosters load with a model version (PairModels.load), not with the package.
    assert _present(loaded, ("lightgbm", "xgboost")) == []
    assert folder.is_dir()


def _imported(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``tree``, relative ones resolved against ``package``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            # ``from mlcore import backtest`` names the stage in the imported names.
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def test_live_stages_import_nothing_from_research() -> None:
    offences = []
    files = [p for stage in LIVE for p in sorted((SRC / stage).rglob("*.py"))]
    assert len(files) > 10
    for path in files:
        package = "mlcore." + ".".join(path.relative_to(SRC).parent.parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in _imported(tree, package):
            if any(name == r or name.startswith(r + ".") for r in RESEARCH):
                offences.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    assert offences == []


def test_the_scan_sees_every_form_of_import() -> None:
    source = (
        "import mlcore.backtest\n"
        "from mlcore.training import x\n"
        "from mlcore import flows\n"
        "from .. import backtest\n"
        "def f():\n    from mlcore.backtest._run import y\n"
        "from mlcore.features import z\n"
    )
    found = _imported(ast.parse(source), "mlcore.serving")
    lines = {line for line, n in found if any(n == r or n.startswith(r + ".") for r in RESEARCH)}
    assert lines == {1, 2, 3, 4, 6}
