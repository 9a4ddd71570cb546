# `make demo`: a fresh machine to a balanced (and trained-on) demo data set.
# `make test`: the test suite, exactly what CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := data/digits

.PHONY: demo test test-fast lint setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/python examples/digits/make_digits.py $(DEMO)
	$(BIN)/balance build $(DEMO)/train --out $(DEMO)/balanced --nmin 100 --overwrite \
	    --transforms crop=24,rotate,cutout=12,width,zoom --seed 0
	$(BIN)/train fit $(DEMO)/balanced --out runs/digits-b0 --overwrite --weights none \
	    --image-size 32 --epochs 30 --patience 30 --monitor val_loss
	$(BIN)/train evaluate runs/digits-b0 $(DEMO)/test --overwrite

test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=10  # two processes (tests/conftest.py)

test-fast: lint  # the inner loop: everything but the tests that train
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

lint: setup  # ruff (lint, then format) and mypy, as configured in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data runs
