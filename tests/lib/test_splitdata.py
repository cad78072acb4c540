"""A split's decoded pixels (stages.lib.splitdata.split_pixels): the table's rows in table order,
read from the memory-mapped decoded file when used, so that the processes of a several-process run
share one copy (the page cache) and each holds only the rows it asks for."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from stages.lib.errors import PipelineError
from stages.lib.splitdata import split_pixels

N, SIZE = 40, 128  # rows of 48 KiB: the pixels outweigh the bookkeeping tracemalloc also sees


@pytest.fixture
def decoded(tmp_path):
    path = tmp_path / "decoded.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(N, SIZE, SIZE, 3))
    array[:] = np.random.default_rng(0).integers(0, 256, size=array.shape, dtype=np.uint8)
    array.flush()
    return path


ROWS = np.array([7, 3, 3, 39, 0, 12, 25, 8])


def table(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame({"row": rows, "path": [f"{r}.jpg" for r in rows], "label": rows % 3})


def test_the_pixels_are_the_tables_rows_in_table_order_however_indexed(decoded):
    whole = np.load(decoded)
    copy = whole[ROWS]
    pixels = split_pixels(decoded, table(), SIZE)
    assert len(pixels) == len(ROWS) and pixels.shape == copy.shape and pixels.dtype == np.uint8
    batch = np.array([5, 0, 1, 1])
    grid = np.array([[0, 2], [7, 3]])  # pictures: the neighbours of each query
    for index in (batch, grid, slice(2, 6), slice(None), 4, -1, (slice(None), 0, 0, 0), (batch, 5), (2, 1)):
        got = pixels[index]
        assert isinstance(got, np.ndarray) and np.array_equal(got, copy[index]), index
    assert np.array_equal(np.asarray(pixels), copy) and np.asarray(pixels).flags.c_contiguous
    assert np.array_equal(np.ascontiguousarray(pixels), copy)


def test_a_process_holds_only_the_rows_it_asks_for(decoded):
    # The rows stay in the decoded file (a change to it shows), and reading a batch allocates that
    # batch, not the split.
    tracemalloc.start()
    try:
        pixels = split_pixels(decoded, table(), SIZE)
        batch = pixels[np.array([0, 1])]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    row_bytes = SIZE * SIZE * 3
    assert batch.nbytes == 2 * row_bytes
    allowed = 2 * row_bytes + 64 * 1024  # the batch, and the table's and the file's bookkeeping
    assert allowed < len(ROWS) * row_bytes  # a copy of the split would not fit in it
    assert peak < allowed, f"{peak} bytes allocated for a split of {len(ROWS) * row_bytes}"
    file = np.load(decoded, mmap_mode="r+")
    file[ROWS[1]] = 0
    file.flush()
    assert not pixels[1].any()  # read from the file, not from a copy


def test_a_row_beyond_the_decoded_file_is_one_line(decoded):
    with pytest.raises(PipelineError, match="has 40 images but the split refers to row 40"):
        split_pixels(decoded, table(np.array([1, 40])), SIZE)
