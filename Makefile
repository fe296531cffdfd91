# Two commands set up everything on a fresh machine with Python 3.11 and make:
#   make serve   start the prediction service on the committed models
#   make test    run the test suite (plus lint and type checks with `make check`)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: install serve train test lint typecheck check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip $(PIP_FLAGS) install --upgrade pip
	$(BIN)/python -m pip $(PIP_FLAGS) install -c constraints.txt -e '.[train,serve,dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/python -m service

train: $(STAMP)
	$(BIN)/python -m training train all

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
