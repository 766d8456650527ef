# `make demo`: set up and run the sample campaigns end to end against the local sink.
# `make test`: set up and run lint, types and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/campaign check hopitaux-2020-05
	$(BIN)/campaign check merci-signataires
	$(BIN)/campaign proof hopitaux-2020-05
	$(BIN)/campaign approve hopitaux-2020-05 --by demo --note "make demo"
	$(BIN)/campaign proof merci-signataires
	$(BIN)/campaign approve merci-signataires --by demo --note "make demo"

lint: setup
	$(BIN)/ruff check campaign tests bench scripts
	$(BIN)/ruff format --check campaign tests bench scripts

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
