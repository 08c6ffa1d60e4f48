#!/usr/bin/env bash
# Headless Chromium for the report's layout test (tests/e2e/test_report_browser.py): Debian's
# `chromium` package, installed when missing and apt-get is there (as root, or through sudo).
# Idempotent; without apt the test skips and says why. `make check` does not need it.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: no chromium and no apt-get; the report's browser test will skip" >&2
  exit 0
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "browser: installing chromium needs root; the report's browser test will skip" >&2
    exit 0
  fi
fi
echo "browser: installing Debian's chromium for the report's browser test ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends chromium >/dev/null \
  || { $sudo apt-get update -qq && $sudo apt-get install -y --no-install-recommends chromium >/dev/null; }
echo "browser: $(command -v chromium)" >&2
