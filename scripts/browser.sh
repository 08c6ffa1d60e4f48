#!/usr/bin/env bash
# Headless Chromium for the report's layout test (tests/e2e/test_report_browser.py): Debian's
# `chromium` package, installed when missing (scripts/apt_install.sh). Idempotent; without it
# the test says why. `make check` does not need it.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" browser chromium "the report's browser test will skip"
if command -v chromium >/dev/null 2>&1; then
  echo "browser: $(command -v chromium)" >&2
fi
