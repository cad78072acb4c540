"""Edges of the split builder that mutation testing found unchecked: the exact refusals, and the
k-shot table's shape (the same columns as the training table, a fresh index)."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.lib.errors import PipelineError
from stages.lib.splits import build_splits, few_shot, given_splits, train_sizes
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


def dealt(sizes: dict[str, list[int]]) -> pd.DataFrame:
    """A training table whose class `c` has groups of the given sizes, rows interleaved across groups."""
    rows = [{"path": f"{c}/g{g}_{i}.jpg", "label": n, "class": c, "group": f"{c}/g{g}"}
            for n, (c, groups) in enumerate(sizes.items()) for g, size in enumerate(groups) for i in range(size)]
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)


def test_k_shots_are_dealt_one_image_per_group_round_after_round():
    # Class a: groups of 1, 3 and 2 images, 5 shots = a round of 3 then a round of 2 (the group of 1 is spent).
    # Class b: groups of 4 and 1 images, 5 shots = every image, the big group alone after the first round.
    train = dealt({"a": [1, 3, 2], "b": [4, 1]})
    picks = set()
    for seed in range(10):
        k = few_shot(train, 5, seed)
        assert k["path"].is_unique and set(k["path"]) <= set(train["path"])
        assert k.groupby("group").size().to_dict() == {"a/g0": 1, "a/g1": 2, "a/g2": 2, "b/g0": 4, "b/g1": 1}
        pd.testing.assert_frame_equal(k, few_shot(train, 5, seed))
        picks.add(tuple(k["path"]))
    assert len(picks) > 1  # the seed chooses which images


def test_without_a_group_column_every_image_is_its_own_group():
    train = dealt({"a": [4, 4, 4], "b": [6, 6]}).iloc[::-1]  # any index: the rows are found by label
    alone = train.assign(group=train.index.astype(str))
    for seed in range(3):
        k = few_shot(train.drop(columns=["group"]), 7, seed)
        pd.testing.assert_frame_equal(k, few_shot(alone, 7, seed).drop(columns=["group"]))


def test_train_sizes_are_what_build_splits_leaves_with_one_image_a_group():
    sizes = {"a": 10, "b": 12}
    assert train_sizes(sizes, test_fraction=0.2, val_fraction=0.1, seed=3) == {"a": 7, "b": 9}
    assert train_sizes(sizes, test_fraction=0.2, val_fraction=0.1, seed=3, test_per_class=5) == {"a": 4, "b": 6}


def test_a_given_split_is_kept_row_for_row_with_labels_by_sorted_class():
    m = pd.DataFrame({"path": [f"p{i}" for i in range(7)], "class": ["zeta", "alpha", "zeta", "mid", "alpha", "mid",
                                                                     "zeta"],
                      "group": [f"g{i}" for i in range(7)], "split": ["test", "train", "val", "train", "test",
                                                                      "train", "train"],
                      "extra": range(7)}, index=range(10, 17))
    s = given_splits(m)
    assert s.classes == ["alpha", "mid", "zeta"]
    for name, rows in (("train", [1, 3, 5, 6]), ("val", [2]), ("test", [0, 4])):
        expected = pd.DataFrame({"path": [f"p{i}" for i in rows], "label": [{"alpha": 0, "mid": 1, "zeta": 2}[
            m["class"].iloc[i]] for i in rows], "class": list(m["class"].iloc[rows]), "group": [f"g{i}" for i in rows]})
        pd.testing.assert_frame_equal(s.table(name), expected)


def test_a_given_split_of_another_name_is_refused_naming_it():
    m = pd.DataFrame({"path": ["p0", "p1", "p2"], "class": ["a", "b", "a"], "group": ["g0", "g1", "g2"],
                      "split": ["train", "holdout", "dev"]})
    with pytest.raises(PipelineError) as info:
        given_splits(m)
    assert str(info.value) == "manifest names split 'dev', not train, val or test; re-run download"
