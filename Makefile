# The verbs the README documents; CI (.ci/run) uses the same ones.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Every install comes from a lock with hashes, so a release of any package changes nothing
# here until `make upgrade` takes it on purpose:
#   requirements.lock        what running needs (make run, the Docker image)
#   requirements-dev.lock    that plus the test and lint tools (make test, lint, bench, soak)
#   requirements-tools.lock  uv, the installer, and setuptools, the package's build backend
LOCK_RUN   := requirements.lock
LOCK_DEV   := requirements-dev.lock
LOCK_TOOLS := requirements-tools.lock
TOOLS := .tools
UV    := $(TOOLS)/bin/uv
# One venv, two stamps: `run` needs only the runtime set; test, lint, soak and bench sync
# the dev set (pytest, mypy, the openai SDK...), about four times the download.
RUN_STAMP := $(VENV)/.run-stamp
DEV_STAMP := $(VENV)/.dev-stamp
SYNC := $(UV) pip sync --quiet --python $(BIN)/python --require-hashes
# The package itself, editable, built with the locked setuptools; its dependencies are
# already there from the lock.
INSTALL_SELF := $(UV) pip install --quiet --python $(BIN)/python --no-deps \
	--build-constraints $(LOCK_TOOLS) -e .
# How the locks are made: for every platform and Python from 3.11, hashes of every file.
COMPILE := $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--no-emit-index-url --custom-compile-command "make lock"
TOOLS_REQUIREMENTS := uv 'setuptools>=68'
# make run PORT=9000 HOST=0.0.0.0 CONFIG=config/gateway.variations.yaml
PORT   ?= 8080
HOST   ?= 127.0.0.1
CONFIG ?= config/gateway.yaml
NODE_E2E := tests/e2e/node
NODE_STAMP := $(NODE_E2E)/node_modules/.installed-stamp

.PHONY: help run test lint bench soak lock upgrade clean

help:  ## list the verbs
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-7s %s\n", $$1, $$2}'

# uv in a venv of its own, so syncing .venv to a lock never removes the installer.
# Installs are silent (each command's own --quiet, and @ so make does not echo them): the
# first `make run` prints one line per step, then the gateway's own output.
$(UV): $(LOCK_TOOLS)
	@echo "make: installing the installer (uv) into $(TOOLS), from $(LOCK_TOOLS)"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --quiet --disable-pip-version-check \
		--require-hashes --no-deps -r $(LOCK_TOOLS)
	@touch $@

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): $(LOCK_RUN) pyproject.toml | $(UV) $(BIN)/python
	@echo "make: installing what running needs into $(VENV), from $(LOCK_RUN)"
	@$(SYNC) $(LOCK_RUN)
	@$(INSTALL_SELF)
	@touch $@

$(DEV_STAMP): $(LOCK_DEV) $(RUN_STAMP) | $(UV)
	@echo "make: adding the test and lint tools to $(VENV), from $(LOCK_DEV)"
	@$(SYNC) $(LOCK_DEV)
	@$(INSTALL_SELF)
	@touch $@

# The npm SDK is a test caller only; skipped (and its tests fail in CI) without node.
$(NODE_STAMP): $(NODE_E2E)/package.json $(NODE_E2E)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(NODE_E2E) && npm ci --silent --no-audit --no-fund && touch node_modules/.installed-stamp; \
	else echo "npm not found: node SDK tests will be skipped"; fi

run: $(RUN_STAMP)  ## start the gateway, sandbox upstream (PORT=8080 HOST=127.0.0.1 CONFIG=config/gateway.yaml)
	@$(BIN)/gateway serve --config $(CONFIG) --host $(HOST) --port $(PORT) --demo-key

test: $(DEV_STAMP) $(NODE_STAMP)  ## run the whole suite (starts a throwaway Redis if REDIS_URL is unset)
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

soak: $(DEV_STAMP)  ## the fault tests for minutes: GATEWAY_SOAK_SECONDS (300) of random faults, 20x the fuzzing
	GATEWAY_SOAK=1 $(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

lint: $(DEV_STAMP)  ## ruff + mypy --strict (gateway, tests and bench)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

bench: $(DEV_STAMP)  ## run the benchmark matrix, write bench/results.md
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The dev lock is resolved first; the runtime lock takes the same versions from it.
lock: | $(UV)  ## re-resolve the locks after editing pyproject.toml, keeping every pin that still fits
	$(COMPILE) pyproject.toml --extra dev $(UPGRADE) -o $(LOCK_DEV)
	$(COMPILE) pyproject.toml -c $(LOCK_DEV) -o $(LOCK_RUN)
	printf '%s\n' $(TOOLS_REQUIREMENTS) | $(COMPILE) - $(UPGRADE) -o $(LOCK_TOOLS)

upgrade:  ## take the newest releases pyproject.toml allows into the locks, then lint and test
	$(MAKE) lock UPGRADE=--upgrade
	$(MAKE) lint test

clean:  ## remove the virtualenvs and caches
	rm -rf $(VENV) $(TOOLS) $(NODE_E2E)/node_modules .pytest_cache .mypy_cache .ruff_cache .coverage*
