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
    import threading

    from tests.http_files import FileServer

    server = FileServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
