# `make run` and `make test` work on a fresh machine: they install what is missing first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/system-packages.sh
	./scripts/system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/chorus serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/calls.py
	$(BIN)/python bench/ringback.py
	$(BIN)/python bench/hotline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
