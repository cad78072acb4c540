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


@pytest.mark.parametrize(("dataset", "where"), [("toy", " of toy"), ("", "")])
def test_too_many_shots_says_the_limit_exactly(dataset, where):
    s = build_splits(manifest({"a": 50, "b": 10}), test_fraction=0.2, val_fraction=0.1, seed=0)
    with pytest.raises(PipelineError) as info:
        few_shot(s.train, 8, seed=0, dataset=dataset)
    assert str(info.value) == (
        f"shots=8 is larger than the training images of class 'b'{where} (7 after holding out test and val); "
        "set shots to at most 7, or 0 for every image"
    )


def test_the_k_shot_table_has_the_training_columns_and_a_fresh_index():
    s = build_splits(manifest({"a": 30, "b": 30}), test_fraction=0.2, val_fraction=0.1, seed=0)
    k = few_shot(s.train, 4, seed=1)
    assert list(k.columns) == list(s.train.columns)
    pd.testing.assert_index_equal(k.index, pd.RangeIndex(8))
