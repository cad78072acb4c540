"""How much of the test set a run's training could see: counts, not log lines.

Pure functions over split tables (columns `row`, `path`, `group`). A run is clean when every
count is 0. The study's own lists and its triplet sampling are not (`../README.md`, Results).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LEAK_KEYS = ("test_in_train", "test_in_pool", "groups_across", "val_in_train", "anchors_outside_train")


def no_leak() -> dict[str, int]:
    """The counts of a run that trains on nothing (the `pretrained` control)."""
    return dict.fromkeys(LEAK_KEYS, 0)


def run_leak(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, *,
    pool: pd.DataFrame | None = None, listed_train: pd.DataFrame | None = None,
) -> dict[str, int]:
    """The leak counts of one training run.

    - `test_in_train`: test images also in the tables the run trained or chose its epoch on;
    - `test_in_pool`: test images the run could draw during training beyond those tables (the
      triplet sampling pool with `triplet.pool: study`; 0 without a `pool`);
    - `groups_across`: source groups (e.g. patches of one raw DeFungi image) with a test image and
      another image the run could see (train, val or pool);
    - `val_in_train`: validation images also in the training table;
    - `anchors_outside_train`: images of `train` (the study's triplet list) missing from
      `listed_train` (its classification train list; counted only when given).
    Images are compared by manifest row.
    """
    import pandas as pd

    test_rows = set(test["row"])
    seen = set(train["row"]) | set(val["row"])
    drawable = set(pool["row"]) if pool is not None else set()
    visible = pd.concat([t for t in (train, val, pool) if t is not None])
    other = visible[~visible["row"].isin(test_rows)]
    return {
        "test_in_train": len(test_rows & seen),
        "test_in_pool": len((test_rows & drawable) - seen),
        "groups_across": len(set(test["group"]) & set(other["group"])),
        "val_in_train": len(set(val["row"]) & set(train["row"])),
        "anchors_outside_train": len(set(train["row"]) - set(listed_train["row"])) if listed_train is not None else 0,
    }


def is_clean(leak: dict[str, int]) -> bool:
    """Whether no test image, and no source group of one, was within the run's reach."""
    return not (leak.get("test_in_train") or leak.get("test_in_pool") or leak.get("groups_across"))
