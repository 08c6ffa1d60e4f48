"""The README's count of fault cases is the number of rows of docs/reliability.md's tables, so
the two cannot drift apart as cases are added."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_fault_case_count_matches_the_reliability_tables() -> None:
    rows = [
        line
        for line in (ROOT / "docs" / "reliability.md").read_text().splitlines()
        if line.startswith("| ")
        and not line.startswith("| input |")
        and not re.match(r"^\|\s*:?-+", line)  # a table's separator row
    ]
    found = re.search(r"(\d+) fault cases tried", (ROOT / "README.md").read_text())
    assert found is not None, "README.md no longer says how many fault cases were tried"
    assert int(found.group(1)) == len(rows)
