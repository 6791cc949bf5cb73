# incident-bridge: `make run` starts the service on its embedded defaults,
# `make test` installs everything and runs the whole test suite (lint, types, tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install install-test clean bench-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The package is installed editable: only a change of pyproject.toml calls for pip again, so
# `make run` and `make test` start at once when nothing changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/incident-bridge serve

# A throwaway service on a free port with a temporary database: a sample webhook with fresh
# times, the incident and its page; Ctrl-C ends it and deletes the database.
.PHONY: demo
demo: install
	$(BIN)/incident-bridge demo

lint: install-test
	$(BIN)/ruff check bridge tests bench tools
	$(BIN)/ruff format --check bridge tests bench tools
	$(BIN)/mypy

test: lint
	$(BIN)/incident-bridge rules check --no-secrets rules/
	$(BIN)/incident-bridge rules test rules/tests/*.yaml
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial

# Every bench/*.py in its smoke mode (a few seconds each): that each benchmark still runs.
bench-smoke: install-test
	tools/bench-smoke

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
