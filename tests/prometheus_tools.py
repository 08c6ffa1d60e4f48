"""Debian's prometheus and promtool for the observability tests (installed by
scripts/prometheus.sh): a skip outside CI when they are missing, a failure in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "rules_test.yml"


def tool(name: str) -> str:
    """The path of ``name`` (prometheus or promtool)."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} is not installed: run scripts/prometheus.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


def check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on an exposition (exit 0 and no output when clean)."""
    return subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
