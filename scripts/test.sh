#!/usr/bin/env bash
# Set up, make sure the real services answer, lint, type-check and run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not e2e"`).
set -euo pipefail
cd "$(dirname "$0")/.."
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlcore/numba}"
bash scripts/setup.sh dev
bash scripts/browser.sh  # chromium for the report's browser test (e2e tier)
bash scripts/prometheus.sh  # prometheus + promtool for the observability tests
if [[ "${CI:-}" == "true" ]]; then
  bash scripts/services.sh
else
  bash scripts/services.sh || echo "test: services unavailable; integration tests will skip outside CI" >&2
fi
bash scripts/lint.sh
echo "== pytest" >&2
# Two pytest-xdist workers (the machine's two cores); every test of the shared demo run goes to
# one of them (tests/conftest.py), so the demo is trained once.
HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" \
  --dist loadgroup --durations=15 "$@"
