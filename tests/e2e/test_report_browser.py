"""The demo's backtest report in headless Chromium at 1400 px: nothing runs off its card.
The screenshot is kept under tests/artifacts/ to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlcore.config import AppConfig
from mlcore.demo import DemoResult
from tests.conftest import REPO
from tests.e2e._chromium import chromium, layout

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture
def browser() -> None:
    """Debian's chromium (scripts/browser.sh installs it): a skip outside CI when it is
    missing, a failure in CI, where it must run."""
    if chromium() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium must be installed in CI (scripts/browser.sh)")
        pytest.skip("needs Debian's chromium (scripts/browser.sh)")


@pytest.mark.usefixtures("browser")
def test_report_fits_its_cards_at_1400px(
    demo_run: tuple[AppConfig, DemoResult], tmp_path: Path
) -> None:
    _, result = demo_run
    assert result.backtest is not None
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "backtest_report_1400.png"
    probe = layout(result.backtest.report, tmp_path, 1400, screenshot=shot)
    print(f"screenshot: {shot}")
    assert probe["width"] == 1400
    assert probe["cards"] == 14
    assert probe["overflows"] == []
    assert shot.stat().st_size > 10_000


@pytest.mark.usefixtures("browser")
def test_the_probe_sees_a_table_off_its_card(tmp_path: Path) -> None:
    page = tmp_path / "wide.html"
    page.write_text(
        '<!DOCTYPE html><html><body><main style="max-width:600px">'
        '<section id="ok"><p>fits</p></section><section id="wide"><table><tr>'
        '<td style="white-space:nowrap">' + "x" * 400 + "</td></tr></table></section>"
        "</main></body></html>",
        encoding="utf-8",
    )
    probe = layout(page, tmp_path, 1400)
    assert probe["cards"] == 2
    assert {o["card"] for o in probe["overflows"]} == {"wide"}
