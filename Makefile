# The verbs the README documents; CI (.ci/run) uses the same ones.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One venv, two stamps: `run` needs only the package; test, lint, soak and bench add the
# dev extras (pytest, mypy, the openai SDK...), about four times the download.
RUN_STAMP := $(VENV)/.run-stamp
DEV_STAMP := $(VENV)/.dev-stamp
# make run PORT=9000 HOST=0.0.0.0 CONFIG=config/gateway.edits.yaml
PORT   ?= 8080
HOST   ?= 127.0.0.1
CONFIG ?= config/gateway.yaml
NODE_E2E := tests/e2e/node
NODE_STAMP := $(NODE_E2E)/node_modules/.installed-stamp

.PHONY: help run test lint bench soak clean

help:  ## list the verbs
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The npm SDK is a test caller only; skipped (and its tests fail in CI) without node.
$(NODE_STAMP): $(NODE_E2E)/package.json $(NODE_E2E)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(NODE_E2E) && npm ci --silent --no-audit --no-fund && touch node_modules/.installed-stamp; \
	else echo "npm not found: node SDK tests will be skipped"; fi

run: $(RUN_STAMP)  ## start the gateway, sandbox upstream (PORT=8080 HOST=127.0.0.1 CONFIG=config/gateway.yaml)
	$(BIN)/gateway serve --config $(CONFIG) --host $(HOST) --port $(PORT) --demo-key

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

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) $(NODE_E2E)/node_modules .pytest_cache .mypy_cache .ruff_cache .coverage*
