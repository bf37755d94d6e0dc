# Quick start:  make demo   (set up and run the demo)  |  make test   (set up and run the test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test docs setup setup-test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,dev,docs]"
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

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
