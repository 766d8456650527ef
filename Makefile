# `make demo`: set up and run the sample campaigns end to end against the local sink.
# `make test`: set up and run lint, types and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup system-libs demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: system-libs $(VENV)/.installed

# Debian packages the tool and its tests use (scripts/apt-packages.txt: faster font subsetting, the
# real mail servers of the tests): installed where apt-get is available and we are root.
system-libs:
	@bash scripts/system-packages.sh

demo: setup
	bash scripts/demo.sh

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
