# The two commands a fresh machine needs (see README.md):
#   make example   build the example Ray project's image and run its job
#   make test      run the whole test suite on the real engine
# Both install what is missing (uv, raybake's environment, the Docker engine,
# the local registry and the offline base image) and reuse what is there.

SHELL := /bin/bash
# `python3 -m uv` works right after `pip install uv`, whatever PATH holds.
UV := python3 -m uv
ENGINE_ENV := /var/tmp/raybake-engine/engine.env

.PHONY: example test bench engine env

env:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

engine:
	@bash buildkit/engine-up

# `raybake submit` builds the image when needed, stages the source and runs the
# job on a local Ray head inside the image. It builds on the offline base image and the host network because no
# image registry and no bridge network exist on this project's machines.
example: env engine
	@set -a; source $(ENGINE_ENV); set +a; \
	RAYBAKE_BASE_IMAGE=$${RAYBAKE_BASE_IMAGE:-$$RAYBAKE_TEST_BASE_IMAGE} RAYBAKE_NETWORK=$${RAYBAKE_NETWORK:-host} \
	  $(UV) run --frozen raybake submit -C examples/ray-app -- python main.py

# Two workers: the tests that use the engine, the registry or Ray one after another
# on one (tests/conftest.py groups them), the rest beside them on the other.
test: env engine
	@$(UV) run --frozen pytest -n 2 --dist loadgroup

# Benchmarks (not tests): builds against two plain Dockerfiles and Ray start-up, the heavy (torch) workload
# (tables and chart under benchmarks/results/), then verification and hook times.
bench: env engine
	@$(UV) run --frozen --with matplotlib python benchmarks/run.py
	@$(UV) run --frozen python benchmarks/heavy.py
	@$(UV) run --frozen python benchmarks/verify.py
	@$(UV) run --frozen python benchmarks/hooks.py
