"""The umap stage keeps umap-learn's compiled code in numba's cache only on a numba release it was
checked against, since it does so through numba's private `Dispatcher._cache`."""

from __future__ import annotations

import pytest

from stages import umap as stage


@pytest.fixture
def uncached(monkeypatch):
    """umap-learn's compiled functions as a fresh process has them (no cache), and a record of
    which ones `enable_caching` is called on (instead of enabling it)."""
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    functions = [f for m in (umap.umap_, umap.layouts, umap.spectral, umap.utils) for f in vars(m).values()
                 if isinstance(f, CPUDispatcher)]
    for function in functions:
        monkeypatch.setattr(function, "_cache", NullCache())
    enabled = []
    monkeypatch.setattr(CPUDispatcher, "enable_caching", lambda self: enabled.append(self))
    return functions, enabled


def test_the_checked_numba_releases_are_told_apart_from_others():
    assert stage.numba_checked("0.57.0") and stage.numba_checked("0.68.1")
    for version in ("0.56.4", "0.69.0rc1", "1.0.0", "dev", ""):
        assert not stage.numba_checked(version), version


def test_on_a_checked_numba_every_compiled_umap_function_is_cached(uncached, monkeypatch):
    import numba

    functions, enabled = uncached
    monkeypatch.setattr(numba, "__version__", "0.68.1")
    assert stage._cache_compilations() is True
    assert functions and {id(f) for f in enabled} == {id(f) for f in functions}


def test_on_an_unchecked_numba_nothing_private_is_touched(uncached, monkeypatch):
    import numba

    _, enabled = uncached
    monkeypatch.setattr(numba, "__version__", "0.99.0")
    assert stage._cache_compilations() is False
    assert enabled == []
