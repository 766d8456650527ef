# `make demo`: set up and run the sample campaigns end to end against the local sink.
# `make test`: set up and run lint, types and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup system-libs test-system-libs demo test lint typecheck pytest bench clean catalogs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: system-libs $(VENV)/.installed

# Debian packages, installed where apt-get is available and we are root: the tool's own
# (scripts/apt-packages.txt: faster font subsetting) for everything, and for the tests only the
# real mail servers and browser they use (scripts/apt-packages-test.txt).
system-libs:
	@bash scripts/system-packages.sh scripts/apt-packages.txt

test-system-libs:
	@bash scripts/system-packages.sh scripts/apt-packages.txt scripts/apt-packages-test.txt

demo: setup
	bash scripts/demo.sh

lint: setup
	$(BIN)/ruff check campaign tests bench scripts
	$(BIN)/ruff format --check campaign tests bench scripts

typecheck: setup
	$(BIN)/mypy

pytest: setup test-system-libs
	$(BIN)/pytest

test: lint typecheck pytest

# The message catalogs (docs/i18n.md): extract the messages of the sources into campaign.pot,
# merge them into each language's .po (translate the new ones there), compile the .mo files.
LOCALE := campaign/locale
KEYWORDS := -k _ -k N_ -k ngettext:1,2 -k plural:2,3 -k pgettext:1c,2
catalogs: $(VENV)/.installed
	$(BIN)/pybabel extract --no-default-keywords $(KEYWORDS) -F babel.cfg \
		--add-location=file --sort-by-file --no-wrap --project=campaign \
		--copyright-holder="campaign" -c "TRANSLATORS:" -o $(LOCALE)/campaign.pot campaign
	$(BIN)/pybabel update -D campaign -i $(LOCALE)/campaign.pot -d $(LOCALE) --no-wrap \
		--no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -D campaign -d $(LOCALE) --statistics

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
