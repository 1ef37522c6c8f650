# Every target installs what it needs into .venv from the pinned constraints, so a
# fresh machine with only Python 3.11 needs nothing else.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BENTOML_DO_NOT_TRACK := true
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-fast bench bento lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[spark,dev,postgres]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/crmscore demo

# Two workers, the cores CI has; tests/conftest.py hands each worker whole groups of tests (the
# serving tests, the Spark tests, every other module), so shared fixtures are built once.
test: $(STAMP)
	CRMSCORE_REQUIRE_SPARK=1 $(BIN)/python -m pytest -n 2

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow and not spark and not api"

# The API load test drives the servers with wrk (C) when it is on PATH; as root, install it from
# the distribution's packages, else the test falls back to its slower Python client.
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null)); } || \
		echo "wrk not installed: bench_api uses its Python client"
	$(BIN)/python -m benchmarks

# The scoring API as a Bento (bentofile.yaml); then `bentoml containerize crmscore:latest` with a Docker engine.
bento: $(STAMP)
	$(BIN)/bentoml build .

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) outputs mlruns mlflow.db .pytest_cache
