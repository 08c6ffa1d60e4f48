#!/usr/bin/env bash
# Prometheus and promtool for the observability tests (tests/unit/test_prometheus_rules.py,
# tests/integration/test_prometheus_scrape.py): Debian's `prometheus` package (2.42), installed
# when missing and apt-get is there (as root, or through sudo). Idempotent. The Debian service is
# never started here (policy-rc.d refuses it in containers; the tests start their own process);
# without apt it says so and the tests that need promtool fail (they never skip).
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus: no promtool and no apt-get; the Prometheus tests will fail" >&2
  exit 0
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "prometheus: installing it needs root; the Prometheus tests will fail" >&2
    exit 0
  fi
fi
echo "prometheus: installing Debian's prometheus for the observability tests ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends prometheus >/dev/null \
  || { $sudo apt-get update -qq && $sudo apt-get install -y --no-install-recommends prometheus >/dev/null; }
# The package's own service (if an init started it) is not ours to keep running.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "prometheus: $(command -v prometheus), $(command -v promtool)" >&2
