"""Fixtures shared across the test suite."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_params, write_params


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
