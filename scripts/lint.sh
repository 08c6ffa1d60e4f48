#!/usr/bin/env bash
# ruff (lint and format) and mypy, as `make check` and `make test` run them.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff" >&2
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
echo "== mypy" >&2
.venv/bin/mypy
