# The two commands: `make run` and `make test`. Everything else is a helper of theirs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run install dev js-tools test test-unit lint engine bench soak clean

# venv with the package and its entry point .venv/bin/openpanel-ws (idempotent)
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(BIN)/openpanel-ws: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

install: $(BIN)/openpanel-ws

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

dev: $(STAMP)

# The JS client's dev tools (typescript, biome), pinned by clients/js/package-lock.json.
JS_TOOLS := clients/js/node_modules/.installed
$(JS_TOOLS): clients/js/package.json clients/js/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing (Debian: apt-get install npm)" >&2; exit 1; }
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

js-tools: $(JS_TOOLS)

# Start the gateway on the embedded default (prints the URL and an admin token).
run: install
	$(BIN)/openpanel-ws serve

# A Docker engine (reused if running; else installed and started) and the offline test image.
engine:
	bash scripts/ensure-docker.sh

# Two passes (docs/testing.md): the parallel one on TEST_WORKERS xdist workers (tests of one
# xdist_group share a worker), then the `serial` tests alone. Fails if either pass fails;
# a pass that selects nothing (pytest's exit 5, e.g. PYTEST_ARGS names one file) is not a
# failure unless both select nothing.
TEST_WORKERS ?= 6
test: dev engine js-tools
	@set +e; \
	$(BIN)/python -m pytest -m "not serial" -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); parallel=$$?; \
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS); serial=$$?; \
	echo "make test: parallel pass exit $$parallel, serial pass exit $$serial"; \
	if [ $$parallel = 5 ] && [ $$serial = 5 ]; then exit 5; fi; \
	for rc in $$parallel $$serial; do if [ $$rc != 0 ] && [ $$rc != 5 ]; then exit $$rc; fi; done

test-unit: dev
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: dev js-tools
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	clients/js/node_modules/.bin/biome ci --colors=off
	node clients/js/tools/types.mjs --check

bench: dev engine
	$(BIN)/python bench/run.py

# The long soak (docs/testing.md "Long soak"): MINUTES of the mixed load against a real
# server and engine; prints a summary and writes tests/soak/results/latest.json.
MINUTES ?= 20
soak: dev engine
	$(BIN)/python tests/soak/soak.py --minutes $(MINUTES) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
