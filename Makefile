# The two commands: `make demo` and `make test`. Each sets up .venv first if needed.
# `make mutate` (not part of `make test`): mutation testing, see docs/testing.md.
ARGS ?=
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test lint bench mutate

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  # make demo ARGS="-S shots=15": a variation of the demo
	$(BIN)/python scripts/demo.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check stages tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cpu.py

mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py $(GROUPS)
