# Two commands for a newcomer: `make run` and `make test`. Both set up first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
JARS := connectors/local/target/.resolved
PIP_VERSION := 26.3

.PHONY: setup run test unit lint bench bench-queries clean

setup: $(INSTALLED) $(JARS)

$(INSTALLED): pyproject.toml constraints.txt
	@echo "== Python environment in $(VENV) (pinned by constraints.txt)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

$(JARS): connectors/local/pom.xml
	@echo "== JVM artifacts from Maven Central: Kafka broker, Flink Kafka connector"
	mvn --batch-mode --quiet --file connectors/local/pom.xml package
	touch $@

run: setup
	$(BIN)/orderscope demo

test: setup
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

# A benchmark, not a test: about 10-15 minutes on its own stack; `make bench BENCH_ARGS=--quick` for a short run.
bench: setup
	$(BIN)/python -m jobs.bench $(BENCH_ARGS)

# How fast analysts and dashboards are answered: 10 million events, a million orders (about 5 minutes).
bench-queries: setup
	$(BIN)/python -m jobs.bench.queries $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	-$(BIN)/orderscope stack down
	rm -rf $(VENV) .state connectors/local/target
