"""Splits: stratified, grouped, seeded; k-shot keeps val and test as they were."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.lib.errors import PipelineError
from stages.lib.splits import build_splits, few_shot


def manifest(sizes: dict[str, int], per_group: int = 1) -> pd.DataFrame:
    rows = []
    for name, n in sizes.items():
        for i in range(n):
            rows.append({"path": f"images/{name}/{name}_{i}.jpg", "class": name, "group": f"{name}/g{i // per_group}"})
    return pd.DataFrame(rows)


def test_splits_are_disjoint_stratified_and_cover_everything():
    m = manifest({"a": 50, "b": 30, "c": 20})
    s = build_splits(m, test_fraction=0.2, val_fraction=0.1, seed=0)
    paths = [set(t["path"]) for t in (s.train, s.val, s.test)]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert set().union(*paths) == set(m["path"])
    assert s.test.groupby("class").size().to_dict() == {"a": 10, "b": 6, "c": 4}
    assert s.val.groupby("class").size().to_dict() == {"a": 5, "b": 3, "c": 2}
    assert s.classes == ["a", "b", "c"]
    assert (s.train["label"] == s.train["class"].map({"a": 0, "b": 1, "c": 2})).all()


def test_same_seed_same_split_other_seed_other_split():
    m = manifest({"a": 40, "b": 40})
    one = build_splits(m, test_fraction=0.25, val_fraction=0.25, seed=1)
    two = build_splits(m, test_fraction=0.25, val_fraction=0.25, seed=1)
    three = build_splits(m, test_fraction=0.25, val_fraction=0.25, seed=2)
    pd.testing.assert_frame_equal(one.test, two.test)
    assert set(one.test["path"]) != set(three.test["path"])


def test_groups_never_straddle_splits():
    m = manifest({"a": 60, "b": 60}, per_group=4)
    s = build_splits(m, test_fraction=0.2, val_fraction=0.1, seed=0)
    owners = {}
    for name, table in (("train", s.train), ("val", s.val), ("test", s.test)):
        for group in table["group"]:
            assert owners.setdefault(group, name) == name


def test_a_group_spanning_classes_is_refused():
    m = manifest({"a": 5, "b": 5})
    m.loc[0, "group"] = "b/g0"
    with pytest.raises(PipelineError, match="several classes"):
        build_splits(m, test_fraction=0.2, val_fraction=0.2, seed=0)


def test_a_class_too_small_to_split_is_refused():
    with pytest.raises(PipelineError, match="class 'b' has 2 images"):
        build_splits(manifest({"a": 10, "b": 2}), test_fraction=0.2, val_fraction=0.2, seed=0)


def test_few_shot_keeps_k_per_class_from_train_only():
    m = manifest({"a": 50, "b": 30})
    s = build_splits(m, test_fraction=0.2, val_fraction=0.1, seed=0)
    k = few_shot(s.train, 5, seed=0)
    assert k.groupby("class").size().to_dict() == {"a": 5, "b": 5}
    assert set(k["path"]) <= set(s.train["path"])
    assert few_shot(s.train, 0, seed=0) is s.train
    pd.testing.assert_frame_equal(k, few_shot(s.train, 5, seed=0))


def test_few_shot_larger_than_a_class_says_the_limit():
    s = build_splits(manifest({"a": 50, "b": 10}), test_fraction=0.2, val_fraction=0.1, seed=0)
    with pytest.raises(PipelineError, match=r"shots=8 .* class 'b'.*at most 7"):
        few_shot(s.train, 8, seed=0, dataset="toy")


def test_few_shot_takes_k_different_source_groups_where_a_class_has_them():
    # DeFungi-like: 10 raw images of 4 patches each per class; 5 shots must be 5 different raw images.
    m = manifest({"a": 80, "b": 80}, per_group=4)
    s = build_splits(m, test_fraction=0.2, val_fraction=0.1, seed=0)
    for seed in range(5):
        k = few_shot(s.train, 5, seed)
        assert (k.groupby("class")["group"].nunique() == 5).all()
    # A class with fewer groups than shots: every group, then more patches of them.
    small = manifest({"a": 12, "b": 12}, per_group=4)  # 3 groups a class
    k = few_shot(small, 5, 0)
    assert (k.groupby("class").size() == 5).all() and (k.groupby("class")["group"].nunique() == 3).all()
