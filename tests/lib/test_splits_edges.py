"""Edges of the split builder that mutation testing found unchecked: the exact refusals, and the
k-shot table's shape (the same columns as the training table, a fresh index)."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.lib.errors import PipelineError
from stages.lib.splits import build_splits, few_shot
from tests.lib.test_splits import manifest


def test_a_manifest_without_groups_is_refused_naming_the_columns():
    with pytest.raises(PipelineError) as info:
        build_splits(manifest({"a": 5, "b": 5}).drop(columns=["group"]), test_fraction=0.2, val_fraction=0.2, seed=0)
    assert str(info.value) == "manifest lacks columns ['group']; re-run the download stage"


def test_a_group_spanning_classes_is_named():
    m = manifest({"a": 5, "b": 5})
    m.loc[0, "group"] = "b/g0"
    with pytest.raises(PipelineError) as info:
        build_splits(m, test_fraction=0.2, val_fraction=0.2, seed=0)
    assert str(info.value) == "group 'b/g0' holds images of several classes; groups must lie within a class"


@pytest.mark.parametrize(("named", "where"), [({"dataset": "toy"}, " of toy"), ({}, "")])
def test_too_many_shots_says_the_limit_exactly(named, where):
    s = build_splits(manifest({"a": 50, "b": 10}), test_fraction=0.2, val_fraction=0.1, seed=0)
    with pytest.raises(PipelineError) as info:
        few_shot(s.train, 8, seed=0, **named)
    assert str(info.value) == (
        f"shots=8 is larger than the training images of class 'b'{where} (7 after holding out test and val); "
        "set shots to at most 7, or 0 for every image"
    )


def test_the_k_shot_table_has_the_training_columns_and_a_fresh_index():
    s = build_splits(manifest({"a": 30, "b": 30}), test_fraction=0.2, val_fraction=0.1, seed=0)
    k = few_shot(s.train, 4, seed=1)
    assert list(k.columns) == list(s.train.columns)
    pd.testing.assert_index_equal(k.index, pd.RangeIndex(8))


def test_the_tables_have_the_manifest_columns_and_a_fresh_index():
    s = build_splits(manifest({"a": 10, "b": 10}), test_fraction=0.2, val_fraction=0.2, seed=0)
    for table in (s.train, s.val, s.test):
        assert list(table.columns) == ["path", "label", "class", "group"]
        pd.testing.assert_index_equal(table.index, pd.RangeIndex(len(table)))


def test_a_class_needs_three_groups_and_three_are_enough():
    with pytest.raises(PipelineError) as info:
        build_splits(manifest({"a": 6, "b": 4}, per_group=2), test_fraction=0.2, val_fraction=0.2, seed=0)
    assert str(info.value) == ("class 'b' has 4 images in 2 source group(s); at least 3 are needed for train, "
                               "val and test")
    s = build_splits(manifest({"a": 3, "b": 3}), test_fraction=0.2, val_fraction=0.2, seed=0)
    assert [len(t) for t in (s.train, s.val, s.test)] == [2, 2, 2]


def test_large_fractions_still_leave_a_group_for_val_and_train():
    s = build_splits(manifest({"a": 3, "b": 4}), test_fraction=0.9, val_fraction=0.05, seed=0)
    assert s.test.groupby("class").size().to_dict() == {"a": 1, "b": 2}
    assert s.val.groupby("class").size().to_dict() == {"a": 1, "b": 1}
    assert s.train.groupby("class").size().to_dict() == {"a": 1, "b": 1}


def test_a_fraction_that_rounds_to_nothing_still_gives_one_image():
    s = build_splits(manifest({"a": 5, "b": 5}), test_fraction=0.05, val_fraction=0.05, seed=0)
    assert len(s.test) == len(s.val) == 2 and len(s.train) == 6


def test_test_per_class_replaces_the_fraction_up_to_n_minus_2():
    m = manifest({"a": 10, "b": 12})
    s = build_splits(m, test_fraction=0.5, val_fraction=0.1, seed=0, test_per_class=3)
    assert s.test.groupby("class").size().to_dict() == {"a": 3, "b": 3}
    s = build_splits(m, test_fraction=0.5, val_fraction=0.1, seed=0, test_per_class=8)  # 10 - 2: one each left
    assert s.test.groupby("class").size().to_dict() == {"a": 8, "b": 8}
    with pytest.raises(PipelineError) as info:
        build_splits(m, test_fraction=0.5, val_fraction=0.1, seed=0, test_per_class=9)
    assert str(info.value) == ("class 'a' has 10 images; split.test_per_class=9 leaves too few for val and train: "
                               "lower it, or set it to null to use split.test_fraction")
