# Quick start:  make demo   (set up and run the demo)  |  make test   (set up and run the test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test docs setup setup-test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the package with its compiled kernels (the `fast` extra: numba), so that the demo runs on
# the fast path; the demo says which backend it used
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[fast]"
	touch $@

$(VENV)/.installed-test: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,dev,docs]"
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

# the first run compiles the numba kernels (1-2 min on 2 cores: 78 s measured); later runs take
# a few seconds
demo: setup
	$(BIN)/python -m xtramgrad demo

# the test suite (with the notebooks and doctests), lint and types, then the docs with
# warnings as errors
test: setup-test
	$(BIN)/python -m pytest -q
	$(MAKE) lint
	$(MAKE) docs

# Sphinx site (executes notebooks/ and the pages written as notebooks) -> docs/_build/html
docs: setup-test
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

lint: setup-test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV)
