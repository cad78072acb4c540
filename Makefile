# The two commands: `make demo` and `make test`. Each sets up .venv first if needed.
# `make mutate` (not part of `make test`): mutation testing, see docs/testing.md.
ARGS ?=
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test figures lint bench mutate

# `make` runs its recipes with .venv/bin first on PATH; your shell does not have it until you
# activate .venv, so setup and demo end by saying how (the `dvc` commands of the README need it).
ACTIVATE := @echo; echo "dvc and the project's python are in .venv: run \`source .venv/bin/activate\` in this shell \
before the \`dvc\` commands (or call them as .venv/bin/dvc)"

setup: $(STAMP)
	$(ACTIVATE)

$(STAMP): pyproject.toml scripts/dvc_quiet.pth
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	cp scripts/dvc_quiet.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
	$(BIN)/python -c 'from stages.umap import warm_up; warm_up()'  # numba compiles umap-learn once
	@touch $(STAMP)

# The demo's numbers depend on torch's thread count (docs/results.md): 2 threads, as printed there,
# whatever the cores, unless OMP_NUM_THREADS is set. Waiting threads sleep instead of spinning
# (OMP_WAIT_POLICY, the same numbers): beside any other busy process, spinning made a training step
# 14 times slower on 2 cores, and even alone the demo took 301 s instead of 344 s (docs/results.md).
demo: export OMP_NUM_THREADS ?= 2
demo: export OMP_WAIT_POLICY ?= PASSIVE
demo: $(STAMP)  # make demo ARGS="-S shots=15": a variation of the demo
	$(BIN)/python scripts/demo.py $(ARGS)
	$(ACTIVATE)

# One worker per core (pytest-xdist); a test file stays on one worker, so its module fixtures run
# once; files go out in collection order, the slow ones first (tests/conftest.py: SLOW_FIRST).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

# The README's commands verbatim in a fresh copy, and every printed demo figure against the code
# (scripts/printed_figures.py): the part of `make test` that checks them, alone.
figures: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_pipeline_e2e.py tests/test_printed_figures.py

lint: $(STAMP)
	$(BIN)/ruff check stages tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cpu.py

mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py $(GROUPS)
