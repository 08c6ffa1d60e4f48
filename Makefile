.PHONY: demo test check lock

# Compiled numba kernels are cached outside the checkout (one cache per machine user).
export NUMBA_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mlcore/numba

demo:  ## set up the runtime environment and run the main job on the embedded default
	bash scripts/setup.sh runtime
	.venv/bin/mlcore demo

test:  ## set up the dev environment, then lint, types and the whole test suite (what CI runs)
	bash scripts/test.sh

check:  ## the fast loop: lint, types and the unit tier without slow tests (< 3 min warm)
	bash scripts/setup.sh dev
	bash scripts/prometheus.sh
	bash scripts/lint.sh
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-dev} .venv/bin/python -m pytest tests/unit -m "not slow" -q -n 2

lock:  ## compile pyproject.toml into requirements/lock*.txt (needs the package registry)
	bash scripts/setup.sh dev
	bash scripts/lock.sh
