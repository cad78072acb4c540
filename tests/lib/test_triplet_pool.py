"""Where triplets come from: the split's own images (default) or, as the study did, every image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.methods.triplet import Triplet, TripletParams, sample_triplets
from stages.lib.trainer import SplitData
from stages.train import decoded_splits


def test_a_positive_is_never_the_anchors_own_image_even_when_the_list_repeats_it():
    # Rows 0 and 1 are the same image (manifest row 10) listed twice; class 0 has one other image (row 2).
    labels = np.array([0, 0, 0, 1, 1])
    images = np.array([10, 10, 11, 12, 13])
    for seed in range(50):
        for anchor, positive, _ in sample_triplets(labels, np.random.default_rng(seed), images=images):
            assert images[positive] != images[anchor] or anchor == positive
            if images[anchor] == 10:
                assert positive == 2  # the only other image of its class


def test_an_image_alone_in_its_class_is_its_own_positive_even_when_listed_twice():
    labels = np.array([0, 0, 1, 1])
    images = np.array([5, 5, 6, 7])
    for anchor, positive, _ in sample_triplets(labels, np.random.default_rng(0), images=images):
        if images[anchor] == 5:
            assert positive == anchor


def test_the_study_sampling_may_draw_the_anchor_as_its_own_positive():
    labels = np.array([0, 0, 1, 1])
    own = sum(
        int((t[:, 0] == t[:, 1]).sum())
        for seed in range(200)
        for t in [sample_triplets(labels, np.random.default_rng(seed), self_positive=True)]
    )
    assert 300 < own < 500  # each of 4 anchors x 200 epochs draws itself with probability 1/2


def test_anchors_come_from_the_list_and_draws_from_the_whole_pool():
    labels = np.repeat([0, 1, 2], 10)  # a pool of 30 images
    anchors = np.array([0, 1, 10, 11, 20, 20])  # the list: a repeat allowed
    negatives = np.array([1, 2, 2, 0, 1, 1])
    seen = set()
    for seed in range(100):
        t = sample_triplets(labels, np.random.default_rng(seed), negatives, anchors=anchors, self_positive=True)
        assert sorted(t[:, 0]) == sorted(anchors)
        assert (labels[t[:, 1]] == labels[t[:, 0]]).all()
        order = [list(anchors).index(a) for a in t[:, 0]]  # the repeat of 20 shares its negative class
        assert (labels[t[:, 2]] == negatives[order]).all()
        seen |= set(t[:, 1]) | set(t[:, 2])
    assert len(seen) == 30  # positives and negatives reach every image of the pool


def tables():
    """A 12-image download: rows 0-5 train, 6-7 val, 8-11 test; classes alternate."""
    pool = pd.DataFrame({"row": range(12), "path": [f"im{i}" for i in range(12)], "label": [i % 2 for i in range(12)],
                         "class": [f"c{i % 2}" for i in range(12)], "group": [f"g{i}" for i in range(12)]})
    return {"train": pool.iloc[0:6], "val": pool.iloc[6:8]}, pool


def draws(data: SplitData, method: Triplet, epochs: int = 30) -> set[int]:
    """Manifest rows of every image a triplet batch used over some epochs."""
    rows = np.arange(len(data.labels)) if data.anchors is not None else data.images
    used = set()
    for epoch in range(epochs):
        for batch in method.split_batches(data, np.random.default_rng(epoch)):
            used |= set(rows[batch].tolist())
    return used


@pytest.mark.parametrize("pool", ["split", "study"])
def test_the_pool_decides_whether_test_rows_can_be_drawn(tmp_path, pool):
    decoded = tmp_path / "decoded.npy"
    np.save(decoded, np.arange(12, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), dtype=np.uint8))
    split_tables, pool_table = tables()
    method = Triplet(TripletParams(batch_size=4, margin=1.0, pool=pool), n_classes=2, embed_dim=4)
    data = decoded_splits(decoded, split_tables, pool_table if pool == "study" else None, size=4)
    train_rows = draws(data["train"], method)
    # Pixels are their own manifest row, so what training sees is what the tables name.
    assert (data["train"].pixels[:, 0, 0, 0] == (np.arange(12) if pool == "study" else np.arange(6))).all()
    if pool == "split":
        assert train_rows <= set(range(6)) and draws(data["val"], method) <= {6, 7}
    else:
        assert set(range(8, 12)) <= train_rows  # the study's pool holds the test rows
        assert set(data["train"].anchors) == set(range(6))
