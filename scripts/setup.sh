#!/usr/bin/env bash
# Create or refresh .venv from the pinned lock. Usage: scripts/setup.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-dev}"
case "$profile" in
  runtime) lock=requirements/lock.txt ;;
  dev) lock=requirements/lock-dev.txt ;;
  *) echo "setup: unknown profile '$profile' (expected runtime or dev)" >&2; exit 2 ;;
esac
python_bin="${PYTHON:-python3.11}"
if ! command -v "$python_bin" >/dev/null 2>&1; then
  echo "setup: $python_bin not found; ml-assets-core needs CPython 3.11" >&2; exit 2
fi
stamp=".venv/.stamp-$profile"
want="$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
# The dev lock holds every runtime pin, so an up-to-date dev environment serves the demo too.
dev_want="$(cat requirements/lock-dev.txt pyproject.toml | sha256sum | cut -c1-16)"
if [[ "$profile" == runtime && -f .venv/.stamp-dev && "$(cat .venv/.stamp-dev)" == "$dev_want" ]]; then
  exit 0
fi
[[ -x .venv/bin/python ]] || "$python_bin" -m venv .venv
echo "setup: installing pinned dependencies ($lock) into .venv ..." >&2
quiet_pip() {  # pip's local-index notices are noise here; real errors still fail the script
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# uv (the lock's pin, bootstrapped by pip) installs the same pins four times faster than pip,
# which a fresh clone's `make test` needs; pip does it when uv cannot (no network for uv...).
uv_pin="$(grep -E '^uv==' requirements/lock-dev.txt || true)"
if [[ -n "$uv_pin" ]] && quiet_pip --no-deps "$uv_pin" \
    && .venv/bin/uv pip install --quiet --no-deps --python .venv/bin/python -r "$lock" \
    && .venv/bin/uv pip install --quiet --no-deps --python .venv/bin/python -e .; then
  :
else
  echo "setup: uv unavailable, installing with pip" >&2
  quiet_pip --no-compile --no-deps -r "$lock"
  quiet_pip --no-deps -e .
fi
rm -f .venv/.stamp-*
echo "$want" > "$stamp"
echo "setup: done" >&2
