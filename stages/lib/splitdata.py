"""Reading a split: its table, class names and decoded pixels, checked against each other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.decoded import open_decoded
from stages.lib.errors import PipelineError
from stages.lib.tables import read_csv


def read_table(splits: Path, name: str) -> pd.DataFrame:
    """`splits/<name>.csv`, with a clear error when it is missing or malformed."""
    path = splits / f"{name}.csv"
    table = read_csv(path, "split", dtype={"path": str, "class": str, "group": str}, keep_default_na=False)
    missing = {"row", "path", "label"} - set(table.columns)
    if missing:
        raise PipelineError(f"split file {path} lacks columns {sorted(missing)}; re-run the split stage")
    if table.empty:
        raise PipelineError(f"split file {path} is empty; re-run the split stage")
    return table


def read_classes(splits: Path) -> list[str]:
    """The class names (index = label) the split stage wrote."""
    path = splits / "classes.json"
    try:
        classes = json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the split stage first (dvc repro)") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); re-run the split stage") from None
    return [str(c) for c in classes]


class Rows:
    """The pixels of some rows of a decoded array, in a given order, read from the memory-mapped
    file when indexed: the operating system's page cache holds them once for every process (the
    ranks of a several-process run, queued stages), and a process holds only the rows it asks for.

    Indexing (`rows[i]`, `rows[batch]`, `rows[a:b]`, an N-d index array) gives a new array, as
    indexing the copy `np.asarray(rows)` would; `np.asarray(rows)` reads every row.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self._array, self._rows = array, rows
        self.dtype = array.dtype
        self.shape = (len(rows), *array.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index) -> np.ndarray:
        rest: tuple = ()
        if isinstance(index, tuple):  # rows[batch, y, x, c]: rows first, then the rest of the index
            index, rest = index[0], index[1:]
        picked = self._rows[index]
        if np.ndim(picked) == 0:
            return np.array(self._array[int(picked)][rest])
        return np.asarray(self._array[np.asarray(picked)][(slice(None), *rest)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.asarray(self._array[self._rows])
        return whole if dtype is None else whole.astype(dtype, copy=False)


def split_pixels(decoded: Path, table: pd.DataFrame, size: int) -> Rows:
    """The decoded pixels of the table's rows in table order, N x size x size x 3 (read on use, see `Rows`)."""
    array = open_decoded(decoded, size=size)
    rows = table["row"].to_numpy()
    if rows.max() >= len(array) or rows.min() < 0:
        raise PipelineError(
            f"{decoded} has {len(array)} images but the split refers to row {rows.max()}; "
            "the split and decode stages ran on different downloads: run dvc repro"
        )
    return Rows(array, rows)
