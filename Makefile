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
	$(BIN)/python -c 'from stages.umap import warm_up; warm_up()'  # numba compiles umap-learn once
	@touch $(STAMP)

demo: $(STAMP)  # make demo ARGS="-S shots=15": a variation of the demo
	$(BIN)/python scripts/demo.py $(ARGS)

# One worker per core (pytest-xdist); a test file stays on one worker, so its module fixtures run
# once; files go out in collection order, the slow ones first (tests/conftest.py: SLOW_FIRST).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check stages tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cpu.py

mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py $(GROUPS)
