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


def read_protocol(splits: Path) -> dict | None:
    """`protocol.json` of a `split.classes: unseen` split (its training and test classes), or None
    for a seen-class split, which writes none."""
    from stages.lib.splits import PROTOCOL_FILE

    path = splits / PROTOCOL_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); re-run the split stage") from None
    if not isinstance(record, dict) or not {"train_classes", "test_classes"} <= set(record):
        raise PipelineError(f"{path} lacks train_classes or test_classes; re-run the split stage")
    return record


def training_labels(table: pd.DataFrame, classes: list[str], train_classes: list[str], where: str) -> pd.DataFrame:
    """`table` with `label` (and `negative_label`, where present) renumbered 0 .. len(train_classes) - 1
    in `train_classes` order: what a classification head over the training classes of
    `split.classes: unseen` is trained on (the split's labels index every class, `classes`)."""
    position = {name: i for i, name in enumerate(classes)}
    index = {position[name]: i for i, name in enumerate(train_classes) if name in position}
    if len(index) != len(train_classes):
        raise PipelineError(f"{where}: protocol.json names classes that classes.json lacks; re-run the split stage")
    out = table.copy()
    for column in ("label", "negative_label"):
        if column not in out.columns:
            continue
        mapped = out[column].map(index)
        if mapped.isna().any():
            other = classes[int(out.loc[mapped.isna(), column].iloc[0])]
            raise PipelineError(
                f"{where} holds class {other!r}, not a training class of protocol.json; re-run the split stage"
            )
        out[column] = mapped.astype(np.int64)
    return out


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
