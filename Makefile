.PHONY: demo test setup lock

demo:  ## set up the runtime environment and run the main job on the embedded default
	bash scripts/setup.sh runtime
	.venv/bin/mlcore demo

test:  ## set up the dev environment and run lint, types and the whole test suite
	bash scripts/test.sh

lock:  ## re-resolve requirements/*.in into the pinned lock files (needs network to the registry)
	bash scripts/lock.sh
