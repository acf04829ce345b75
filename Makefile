# Entry points; scripts/setup.sh does the real work and is safe to run repeatedly.
#   make test                        set up, then run the harness's own tests
#   make bench PYTEST_ARGS='-x'      set up, then run the canary, smoke and Gemma benchmarks
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV_PY := .venv/bin/python
# CPU profiles (smoke, canary) run on the image setup builds from Debian packages; with a
# registry, `make bench BENCH_CPU_IMAGE=ghcr.io/ggml-org/llama.cpp:server-bNNNN` works too.
export BENCH_CPU_IMAGE ?= local/llama.cpp:server
PYTEST_ARGS ?=
FORCE ?=

.PHONY: help setup images smoke-model test test-fast test-stress bench lint clean-containers

help:
	@echo "make setup             install/start Docker, .venv, images, smoke models (idempotent)"
	@echo "make images [FORCE=1]  build the llama-server and sandbox images from Debian packages"
	@echo "make smoke-model       write the tiny GGUF models to build/models"
	@echo "make test              setup, then pytest tests \$$(PYTEST_ARGS)"
	@echo "make test-fast         .venv only, then the tests that need no Docker (the edit loop)"
	@echo "make test-stress       setup, then the timing-sensitive tests \$$(RUNS) times under a CPU hog"
	@echo "make bench             setup, then pytest bench_tests -k 'canary or smoke or gemma' \$$(PYTEST_ARGS)"
	@echo "make lint              ruff check . and mypy"
	@echo "make clean-containers  remove containers labelled bench.harness"

setup:
	bash scripts/setup.sh

images:
	bash docker/llama-server/build-debian.sh $(if $(FORCE),--force)
	if [[ -f docker/sandbox/build-debian.sh ]]; then \
		bash docker/sandbox/build-debian.sh $(if $(FORCE),--force); fi

smoke-model:
	$(VENV_PY) scripts/make_smoke_model.py $(if $(FORCE),--force)

test: export BENCH_TEST_TOOLS = 1
test: setup
	$(VENV_PY) -m pytest tests --durations=25 $(PYTEST_ARGS)

# The tests marked `stress` (held phases, interruptions, load), $(RUNS) times in a row with
# one busy loop per core; STRESS_ARGS='--no-hog' for an idle machine, '-- -k ...' to narrow.
RUNS ?= 10
STRESS_ARGS ?=
test-stress: export BENCH_TEST_TOOLS = 1
test-stress: setup
	$(VENV_PY) scripts/test_stress.py --runs $(RUNS) $(STRESS_ARGS)

bench: setup
	$(VENV_PY) -m pytest bench_tests -k "canary or smoke or gemma" $(PYTEST_ARGS)

# The edit loop: no Docker engine, no images; two xdist workers.
test-fast: export BENCH_SKIP_DOCKER = 1
test-fast:
	bash scripts/setup.sh
	$(VENV_PY) -m pytest tests -m "not docker" -n 2 -q $(PYTEST_ARGS)

lint: export BENCH_SKIP_DOCKER = 1
lint:
	bash scripts/setup.sh
	.venv/bin/ruff check .
	.venv/bin/mypy

clean-containers:
	ids="$$(docker ps -aq --filter label=bench.harness)"; \
	if [[ -n "$$ids" ]]; then docker rm -f $$ids; else echo "no bench.harness containers"; fi
