#!/usr/bin/env bash
# Compile pyproject.toml into the pinned lock files (uv from the dev environment; needs the
# package registry). lock.txt: the runtime install; lock-dev.txt: runtime + the dev extra, held to
# lock.txt's pins so both environments run the same code. Existing pins are kept unless a range
# moved; `make lock ARGS=--upgrade` takes the newest releases the ranges allow.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-.venv/bin/uv}"
[[ -x "$uv" ]] || uv=uv
common=(--python-version 3.11 --no-header --annotation-style split --quiet)
"$uv" pip compile pyproject.toml "${common[@]}" ${ARGS:-} -o requirements/lock.txt
"$uv" pip compile pyproject.toml --extra dev -c requirements/lock.txt "${common[@]}" ${ARGS:-} \
  -o requirements/lock-dev.txt
echo "lock: requirements/lock.txt ($(grep -c '==' requirements/lock.txt) pins)," \
  "requirements/lock-dev.txt ($(grep -c '==' requirements/lock-dev.txt) pins)" >&2
