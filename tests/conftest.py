"""Fixtures shared across the test suite."""

from __future__ import annotations

import os

import pytest

# One OpenMP thread for torch in the test processes, set before anything imports torch. `make test`
# runs one pytest-xdist worker per core; with torch's default (a thread per core) each worker's
# threads spin-wait for the others' cores, and the in-process training tests ran 2 to 5 times
# slower (a 2-epoch train of the tiny model: 22 s against 11 s on 2 busy cores). Subprocesses get
# the same from tests.helpers.env(). A value already set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The README's demo chain (tests/test_pipeline_e2e.py) runs with 2 threads beside the other worker:
# threads that wait sleep instead of spinning on the cores the others need (the results are the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tests.helpers import tiny_params, write_params

# Files that run the whole pipeline through DVC (minutes each): collected first, so that under
# `make test` (pytest-xdist, whole files handed out in collection order: --no-loadscope-reorder)
# they start at once and the short files fill the gaps, instead of the longest starting last.
SLOW_FIRST = (
    "tests/test_pipeline_e2e.py",
    "tests/test_scaling_e2e.py",
    "tests/reliability/test_dvc_repro.py",
    "tests/test_nothing_lost.py",
    "tests/test_own_data_e2e.py",
    "tests/test_own_data_private.py",
    "tests/stages/test_refused_value.py",
    "tests/reliability/test_resume.py",
    "tests/reliability/test_distributed_train.py",
    "tests/stages/test_annotations.py",
    "tests/stages/test_stages.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


@pytest.fixture
def params_file(tmp_path):
    """A tiny, valid params.yaml in a temporary folder; returns its path."""
    return write_params(tmp_path / "params.yaml", tiny_params())


@pytest.fixture
def http_files():
    """A loopback HTTP server serving `server.files` (URL path -> bytes); see tests/http_files.py."""
    from tests.http_files import FileServer, running

    with running(FileServer()) as server:
        yield server
