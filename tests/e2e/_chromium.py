"""Headless Chromium (Debian's `chromium`) from the command line: a page's layout measured by a
script injected into a copy of it, and a screenshot."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

# For every card (<section>): each visible descendant whose box leaves the card's, and a card
# whose content is wider than the card. The result goes into a <pre> that --dump-dom prints.
_PROBE = """<script>
window.addEventListener("load", () => {
  const out = {width: document.documentElement.clientWidth,
               height: document.documentElement.scrollHeight, cards: 0, overflows: []};
  for (const card of document.querySelectorAll("section")) {
    out.cards += 1;
    const box = card.getBoundingClientRect();
    if (card.scrollWidth > card.clientWidth + 1) {
      out.overflows.push({card: card.id, what: "scrollWidth", scrollWidth: card.scrollWidth,
                          clientWidth: card.clientWidth});
    }
    for (const el of card.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      if (r.width === 0 || r.height === 0 || style.visibility === "hidden"
          || style.display === "none") continue;
      if (r.right > box.right + 0.5 || r.left < box.left - 0.5) {
        const cls = typeof el.className === "string" ? el.className : el.className.baseVal;
        out.overflows.push({card: card.id, what: el.tagName.toLowerCase() + "." + cls,
                            left: Math.round(r.left), right: Math.round(r.right),
                            card_left: Math.round(box.left), card_right: Math.round(box.right)});
      }
    }
  }
  const pre = document.createElement("pre");
  pre.id = "layout-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--virtual-time-budget=10000")  # fmt: skip


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(browser: str, work: Path, args: list[str]) -> str:
    profile = work / "profile"
    profile.mkdir(exist_ok=True)
    done = subprocess.run(
        [browser, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    return done.stdout


def layout(page: Path, work: Path, width: int = 1400, screenshot: Path | None = None) -> Any:
    """The probe's result for ``page`` rendered ``width`` px wide; with ``screenshot``, also a
    PNG of the whole page (height from the probe, at most 16,000 px)."""
    browser = chromium()
    assert browser is not None, "chromium is not installed (scripts/browser.sh)"
    probed = work / "probed.html"
    text = page.read_text(encoding="utf-8")
    probed.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
    dom = _run(browser, work, [f"--window-size={width},1000", "--dump-dom", probed.as_uri()])
    start = dom.index('<pre id="layout-result">') + len('<pre id="layout-result">')
    result = json.loads(dom[start : dom.index("</pre>", start)].replace("&amp;", "&"))
    if screenshot is not None:
        height = min(int(result["height"]) + 20, 16_000)
        _run(browser, work, [f"--window-size={width},{height}", f"--screenshot={screenshot}",
                             page.as_uri()])  # fmt: skip
    return result
