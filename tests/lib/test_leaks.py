"""Leak counts on hand-made tables."""

from __future__ import annotations

import pandas as pd

from stages.lib.leaks import is_clean, no_leak, run_leak


def table(rows: list[int], groups: dict[int, str] | None = None) -> pd.DataFrame:
    groups = groups or {}
    return pd.DataFrame(
        {"row": rows, "path": [f"im{r}" for r in rows], "group": [groups.get(r, f"g{r}") for r in rows]}
    )


def test_a_clean_split_counts_nothing():
    leak = run_leak(table([0, 1, 2]), table([3]), table([4, 5]))
    assert leak == no_leak() and is_clean(leak)


def test_test_images_in_the_lists_and_in_the_pool_are_counted_apart():
    train, val, test = table([0, 1, 2, 8]), table([3, 9, 1]), table([7, 8, 9, 10])
    pool = table(list(range(12)))
    leak = run_leak(train, val, test, pool=pool)
    assert leak["test_in_train"] == 2  # 8 in train, 9 in val
    assert leak["test_in_pool"] == 2  # 7 and 10: reachable only through the pool
    assert leak["val_in_train"] == 1  # row 1
    assert not is_clean(leak)
    assert run_leak(train, val, test)["test_in_pool"] == 0


def test_groups_across_counts_groups_shared_through_other_images():
    groups = {0: "raw1", 5: "raw1", 1: "raw2", 6: "raw2", 2: "raw3"}
    leak = run_leak(table([0, 1, 2], groups), table([3], groups), table([5, 6, 7], groups))
    assert leak["groups_across"] == 2 and leak["test_in_train"] == 0 and not is_clean(leak)


def test_triplet_anchors_outside_the_train_list_are_counted():
    leak = run_leak(table([0, 1, 2, 3, 3]), table([4]), table([5]), listed_train=table([0, 1]))
    assert leak["anchors_outside_train"] == 2
