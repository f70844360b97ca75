# atlasia.dr — developer and CI entry points. `make help` lists the targets.
#
# Every tool runs from the project's venv (.venv/bin/...), made by `make setup` from requirements-dev.txt.
# Ansible writes into .ansible/ (ANSIBLE_HOME), never into ~/.ansible.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/pytest
MOLECULE := $(BIN)/molecule
PYTEST_ARGS ?=
# Integration and fault tests run in this many pytest-xdist workers, one test file per worker at a time (each file
# starts its own servers on free ports under its own .tmp/ folder); 0 runs them in this process, one after another.
# Files are handed out longest first by the seconds in tests/durations.json (tests/support/schedule.py); every run
# writes what it measured to .tmp/test-durations.json, and `.venv/bin/python -m tests.support.schedule` copies it in.
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

export PATH := $(BIN):$(PATH)
export ANSIBLE_HOME := $(CURDIR)/.ansible
export PYTHONDONTWRITEBYTECODE := 1

# pytest exits 5 when it collected no test: that fails the target, with a word on why.
define run_pytest
	$(PYTEST) $(1) $(PYTEST_ARGS) || { rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make: no tests collected in $(1) (pytest exit 5): failing" >&2; fi; \
	  exit $$rc; }
endef

.PHONY: help setup test unit integration faults lint sanity molecule demo bench bench-smoke images \
	docker-up docker-down clean distclean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-12s %s\n", $$1, $$2 }'

setup: ## Debian packages (as root), .venv, docker compose plugin, ansible-test offline pip bootstrap
	scripts/setup.sh

# Direct targets need a venv; `make setup` (run by test/demo/bench) also checks the Debian packages.
$(STAMP): requirements-dev.txt
	scripts/setup.sh
	@touch $(STAMP)

# Each stage prints its own duration, so a slow one shows in the CI log.
define timed
	@start=$$(date +%s); $(MAKE) $(1); echo "== make $(1): $$(( $$(date +%s) - start )) s"
endef

# unit, lint and sanity run side by side (none needs a server; each prints its output whole when it ends); so do
# Molecule and the fault suite (Molecule waits on containers about half of its time; their servers take free ports
# from different ranges, and the fault suite uses no container), their lines interleaved.
test: setup ## Everything CI runs: unit, lint, sanity, integration (bench smoke included), molecule, faults
	@start=$$(date +%s); $(MAKE) -j3 --output-sync=target timed-unit timed-lint timed-sanity; \
	  echo "== make unit lint sanity, side by side: $$(( $$(date +%s) - start )) s"
	$(call timed,integration)
	@start=$$(date +%s); $(MAKE) -j2 --output-sync=line timed-molecule timed-faults; \
	  echo "== make molecule faults, side by side: $$(( $$(date +%s) - start )) s"

timed-%:
	$(call timed,$*)

unit: $(STAMP) ## Unit tests (pytest tests/unit)
	$(call run_pytest,tests/unit)

integration: $(STAMP) ## Integration tests against real servers (pytest tests/integration)
	$(call run_pytest,tests/integration $(XDIST))

faults: $(STAMP) ## Fault-injection suite: killed runs, S3 and disk failures, damaged sets (pytest tests/faults)
	$(call run_pytest,tests/faults $(XDIST))

lint: $(STAMP) ## ansible-lint (production profile) and shellcheck
	scripts/lint.sh

sanity: $(STAMP) ## ansible-test sanity --python 3.11 on a mirror in .tmp/sanity
	scripts/sanity.sh

molecule: $(STAMP) ## molecule test for every scenario in molecule/*/
	@scenarios=(); \
	for dir in molecule/*/; do \
	  if [ -f "$${dir}molecule.yml" ]; then scenarios+=("$$(basename "$$dir")"); fi; \
	done; \
	if [ $${#scenarios[@]} -eq 0 ]; then echo "no molecule scenarios yet"; exit 0; fi; \
	scripts/build-images.sh; \
	for name in "$${scenarios[@]}"; do \
	  echo "== molecule test -s $$name"; \
	  $(MOLECULE) test -s "$$name"; \
	done

demo: setup ## Run the end-to-end demo (scripts/demo.sh)
	scripts/demo.sh

bench: setup ## Run the benchmarks (scripts/bench.sh), if there are any
	@if [ -f scripts/bench.sh ]; then bash scripts/bench.sh; else echo "no scripts/bench.sh yet: nothing to run"; fi

bench-smoke: $(STAMP) ## A short benchmark run (scripts/bench.sh --smoke; tests/integration/test_bench_smoke.py runs it in make test)
	@if [ -f scripts/bench.sh ]; then bash scripts/bench.sh --smoke; else echo "no scripts/bench.sh: bench smoke skipped"; fi

images: ## Build the local container images when missing (scripts/build-images.sh)
	scripts/build-images.sh

docker-up: ## Start a Docker engine when none answers (scripts/docker-engine.sh)
	scripts/docker-engine.sh start

docker-down: ## Stop the Docker engine that docker-up started (and nothing else)
	scripts/docker-engine.sh stop

clean: ## Remove test output, caches and scratch files (keeps .venv, images and a running dockerd)
	rm -rf tests/output .pytest_cache .ansible .tmp/sanity
	@if [ -d .tmp ]; then find .tmp -mindepth 1 -maxdepth 1 ! -name 'dockerd.*' -exec rm -rf {} +; fi
	find . -path ./.venv -prune -o -path ./.collections -prune -o -type d -name __pycache__ -print0 \
	  | xargs -0 rm -rf
	find . -path ./.venv -prune -o -path ./.collections -prune -o -type d -name .molecule -print0 \
	  | xargs -0 rm -rf

distclean: clean ## clean, stop our dockerd, and remove .venv and .cache
	scripts/docker-engine.sh stop
	rm -rf .venv .cache .tmp
