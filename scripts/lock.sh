#!/usr/bin/env bash
# Re-resolve the pinned lock files with uv. torch's CPU build is taken from the machine's wheel folder.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
"$uv" pip compile requirements/base.in --python-version 3.11 --find-links /opt/wheels -o requirements/lock.txt --no-header
"$uv" pip compile requirements/dev.in --python-version 3.11 --find-links /opt/wheels -o requirements/lock-dev.txt --no-header
