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
	$(BIN)/campaign check hopitaux-2020-05
	$(BIN)/campaign check merci-signataires
	$(BIN)/campaign render hopitaux-2020-05
	$(BIN)/campaign proof hopitaux-2020-05
	$(BIN)/campaign approve hopitaux-2020-05 --by demo --note "make demo"
	$(BIN)/campaign proof merci-signataires
	$(BIN)/campaign approve merci-signataires --by demo --note "make demo"
	@# Send both campaigns to the local sink (nothing leaves this machine), then stop the sink.
	@mkdir -p outbox
	@$(BIN)/campaign sink --port 8025 > outbox/sink.out 2>&1 & pid=$$!; trap "kill $$pid" EXIT; \
	  sleep 2; cat outbox/sink.out; \
	  $(BIN)/campaign send hopitaux-2020-05 && \
	  $(BIN)/campaign send merci-signataires && \
	  $(BIN)/campaign status hopitaux-2020-05 && \
	  $(BIN)/campaign status merci-signataires
	@echo "received messages: outbox/sink/new/ (one file per message; open them with any mail client)"

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
