#!/usr/bin/env bash
# Prometheus and promtool for the observability tests (tests/unit/test_prometheus_rules.py,
# tests/integration/test_prometheus_metrics.py, tests/e2e/test_prometheus.py): Debian's
# `prometheus` package (2.42), installed when missing (scripts/apt_install.sh). Idempotent. The
# Debian service is never kept running (the tests start their own process); without the package
# the tests that need promtool fail (they never skip).
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" prometheus prometheus "the Prometheus tests will fail"
# The package's own service (if an init started it) is not ours to keep running.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || sudo -n systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if command -v promtool >/dev/null 2>&1; then
  echo "prometheus: $(command -v prometheus), $(command -v promtool)" >&2
fi
