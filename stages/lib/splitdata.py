"""Reading a split: its table, class names and decoded pixels, checked against each other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.decoded import open_decoded
from stages.lib.errors import PipelineError


def read_table(splits: Path, name: str) -> pd.DataFrame:
    """`splits/<name>.csv`, with a clear error when it is missing or malformed."""
    path = splits / f"{name}.csv"
    try:
        table = pd.read_csv(path, dtype={"path": str, "class": str, "group": str}, keep_default_na=False)
    except FileNotFoundError:
        raise PipelineError(f"split file {path} not found; run the split stage first (dvc repro)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PipelineError(f"split file {path} is corrupt ({exc}); re-run the split stage") from None
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


def split_pixels(decoded: Path, table: pd.DataFrame, size: int) -> np.ndarray:
    """The decoded pixels of the table's rows (a copy in table order), N x size x size x 3."""
    array = open_decoded(decoded, size=size)
    rows = table["row"].to_numpy()
    if rows.max() >= len(array) or rows.min() < 0:
        raise PipelineError(
            f"{decoded} has {len(array)} images but the split refers to row {rows.max()}; "
            "the split and decode stages ran on different downloads: run dvc repro"
        )
    return np.ascontiguousarray(array[rows])
