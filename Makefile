# scalebus: `make run` shows the whole loop on this machine; `make test` runs the test suite.
# Both install what they need into .venv first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
CODE   := shared services scalebus tests

.PHONY: run test install lint typecheck imports schemas check-schemas bench test-deps clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scalebus needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PIP) install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## run: the whole loop on this machine (embedded NATS, three services, demo workload, load generator)
run: $(STAMP)
	$(PY) -m scalebus.cli run

## test-deps: real servers the tests talk to (Prometheus, Kafka); each script is idempotent
test-deps: $(STAMP)
	@for script in scripts/test-deps/*.sh; do [ -e "$$script" ] || continue; bash "$$script" || exit 1; done

## test: lint, types, import layers, schemas, then pytest (exit 5, no tests collected, fails)
test: $(STAMP) test-deps lint typecheck imports check-schemas
	$(VENV)/bin/pytest -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

schemas: $(STAMP)
	$(PY) -m scalebus.schemas docs/schemas

check-schemas: $(STAMP)
	$(VENV)/bin/pytest -p no:cacheprovider -q tests/shared/test_schemas_committed.py

bench: $(STAMP)
	$(PY) -m scalebus.bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
