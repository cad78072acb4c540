"""Fuzzing the split builder: any class sizes, any groups, any fractions, any seed give splits that
are disjoint, cover the manifest, hold every class in every split, never cut a group, and are
the same for the same seed; the k-shot subset keeps exactly k per class or says why it cannot."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages.lib.errors import PipelineError
from stages.lib.splits import SPLITS, build_splits, few_shot

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def manifests(draw) -> pd.DataFrame:
    """Classes of at least 3 images, each image in a group of 1-6 images of its class, rows shuffled."""
    rows = []
    for c in range(draw(st.integers(2, 5))):
        name = f"class{c}"
        sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=10).filter(lambda s: sum(s) >= 3))
        for g, size in enumerate(sizes):
            rows += [{"path": f"images/{name}/g{g}_{i}.jpg", "class": name, "group": f"{name}/g{g}"}
                     for i in range(size)]
    order = draw(st.permutations(range(len(rows))))
    return pd.DataFrame([rows[i] for i in order])


fractions = st.tuples(st.floats(0.01, 0.9), st.floats(0.01, 0.9)).filter(lambda f: f[0] + f[1] < 0.99)
seeds = st.integers(0, 2**32 - 1)


def split_or_error(manifest, fractions, seed):
    try:
        return build_splits(manifest, test_fraction=fractions[0], val_fraction=fractions[1], seed=seed)
    except PipelineError as exc:
        groups = manifest.groupby("class")["group"].nunique()
        assert (groups < 3).any(), f"refused a splittable manifest: {exc}"
        assert "at least 3 are needed" in str(exc) and "\n" not in str(exc)
        return None


@FUZZ
@given(manifests(), fractions, seeds)
def test_splits_are_disjoint_complete_stratified_grouped_and_seeded(manifest, fractions, seed):
    tables = split_or_error(manifest, fractions, seed)
    if tables is None:
        return
    parts = [tables.table(name) for name in SPLITS]
    paths = [list(t["path"]) for t in parts]
    assert sum(map(len, paths)) == len(set().union(*paths)) == len(manifest)  # disjoint, nothing repeated
    assert set().union(*paths) == set(manifest["path"])  # covers the manifest
    classes = sorted(manifest["class"].unique())
    assert tables.classes == classes
    for name, table in zip(SPLITS, parts, strict=True):
        assert sorted(table["class"].unique()) == classes, f"{name} lacks a class"
        assert (table["label"] == table["class"].map(classes.index)).all()
        order = manifest.reset_index(drop=True).reset_index().set_index("path")["index"]
        assert order[table["path"]].is_monotonic_increasing  # rows keep the manifest's order
    owner = {}
    for name, table in zip(SPLITS, parts, strict=True):
        for group in table["group"]:
            assert owner.setdefault(group, name) == name, f"group {group} straddles {owner[group]} and {name}"
    again = build_splits(manifest, test_fraction=fractions[0], val_fraction=fractions[1], seed=seed)
    for name in SPLITS:
        pd.testing.assert_frame_equal(tables.table(name), again.table(name))


@FUZZ
@given(manifests(), fractions, seeds, st.integers(0, 12))
def test_few_shot_keeps_exactly_k_per_class_or_names_the_limit(manifest, fractions, seed, shots):
    tables = split_or_error(manifest, fractions, seed)
    if tables is None:
        return
    counts = tables.train.groupby("class").size()
    try:
        subset = few_shot(tables.train, shots, seed, "fuzz")
    except PipelineError as exc:
        assert shots > counts.min()
        assert f"at most {counts.min()}" in str(exc) and "\n" not in str(exc)
        return
    assert shots <= counts.min() or shots == 0
    if shots == 0:
        pd.testing.assert_frame_equal(subset, tables.train)
        return
    assert set(subset["path"]) <= set(tables.train["path"])
    assert subset.groupby("class").size().to_dict() == {c: shots for c in tables.classes}
    pd.testing.assert_frame_equal(subset, few_shot(tables.train, shots, seed, "fuzz"))
