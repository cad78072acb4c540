"""Where a triplet's images come from (`sample_triplets`) and how `Triplet.split_batches` lays them
out: every listed image an anchor once, a positive of its class that is not its own image (unless
the study's pool allows it or the class has no other), a negative of another class or of the
study's prescribed one, drawn from the split or from every downloaded image (`triplet.pool`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.methods.triplet import Triplet, TripletParams, sample_triplets
from stages.lib.trainer import SplitData
from stages.lib.training_data import decoded_splits


def triplet(batch_size: int, n_classes: int = 3, pool: str = "split") -> Triplet:
    return Triplet(TripletParams(batch_size=batch_size, margin=1.0, pool=pool), n_classes=n_classes, embed_dim=4)


def split(labels: np.ndarray, negative_labels=None, **more) -> SplitData:
    return SplitData(np.zeros((len(labels), 2, 2, 3), dtype=np.uint8), labels, negative_labels, **more)


# --- sample_triplets -------------------------------------------------------------------------


def test_every_image_is_an_anchor_once_with_a_positive_of_its_class_and_a_negative_of_another():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 4)
    triplets = sample_triplets(labels, np.random.default_rng(0))
    assert sorted(triplets[:, 0]) == list(range(len(labels)))
    for anchor, positive, negative in triplets:
        assert labels[positive] == labels[anchor] and positive != anchor
        assert labels[negative] != labels[anchor]
    again = sample_triplets(labels, np.random.default_rng(0))
    assert (again == triplets).all()


def test_prescribed_negative_classes_are_used():
    labels = np.array([0, 0, 1, 1, 2, 2])
    negative = np.array([2, 2, 0, 0, 1, 1])
    triplets = sample_triplets(labels, np.random.default_rng(1), negative_labels=negative)
    for anchor, _, neg in triplets:
        assert labels[neg] == negative[anchor]


def test_a_lone_image_is_its_own_positive():
    labels = np.array([0, 1, 1])
    triplets = sample_triplets(labels, np.random.default_rng(0))
    row = triplets[triplets[:, 0] == 0][0]
    assert row[1] == 0


def test_in_a_class_of_two_each_image_is_the_others_positive():
    labels = np.array([0, 0, 1, 1, 1])
    for seed in range(5):
        for anchor, positive, _ in sample_triplets(labels, np.random.default_rng(seed)):
            if anchor < 2:
                assert positive == 1 - anchor


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


def test_two_classes_are_enough_and_one_is_refused():
    assert len(sample_triplets(np.array([0, 0, 1, 1]), np.random.default_rng(0))) == 4
    with pytest.raises(ValueError, match="^triplets need at least two classes$"):
        sample_triplets(np.zeros(4, dtype=int), np.random.default_rng(0))


def test_mismatched_image_ids_and_negatives_are_refused_exactly():
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError) as info:
        sample_triplets(labels, np.random.default_rng(0), images=np.arange(3))
    assert str(info.value) == "images must give one id per label, got (3,) for (4,)"
    with pytest.raises(ValueError) as info:
        sample_triplets(labels, np.random.default_rng(0), np.array([1, 0]))
    assert str(info.value) == "negative_labels must give one class per anchor, got 2 for 4"


# --- Triplet.split_batches ---------------------------------------------------------------------


def test_a_batch_is_its_anchors_then_its_positives_then_its_negatives():
    labels = np.arange(24) % 4
    batches = triplet(5, n_classes=4).split_batches(split(labels), np.random.default_rng(7))
    triplets = sample_triplets(labels, np.random.default_rng(7))
    assert [len(b) for b in batches] == [15, 15, 15, 15, 12]
    rebuilt = np.concatenate([b.reshape(3, -1).T for b in batches])
    np.testing.assert_array_equal(rebuilt, triplets)
    assert (labels[rebuilt[:, 0]] == labels[rebuilt[:, 1]]).all()
    assert (labels[rebuilt[:, 0]] != labels[rebuilt[:, 2]]).all()


def test_the_study_negatives_reach_the_batches():
    labels = np.repeat(np.arange(4), 3)
    negative = (labels + 2) % 4  # the study's lists name each anchor's negative class
    for batch in triplet(5, n_classes=4).split_batches(split(labels, negative), np.random.default_rng(0)):
        anchors, _, negatives = np.split(batch, 3)
        assert (labels[negatives] == negative[anchors]).all()


@pytest.mark.parametrize("pool", ["split", "study"])
def test_listed_anchors_image_ids_and_the_pool_reach_the_triplets(pool):
    # Rows 0 and 1 are one image (id 10) listed twice; the list names rows 0, 1, 3 and 3 as anchors.
    labels, images, anchors = np.array([0, 0, 0, 1, 1]), np.array([10, 10, 11, 12, 13]), np.array([0, 1, 3, 3])
    method = triplet(3, n_classes=2, pool=pool)
    own = 0
    for seed in range(40):
        batches = method.split_batches(split(labels, anchors=anchors, images=images), np.random.default_rng(seed))
        assert [len(b) for b in batches] == [9, 3]  # 4 triplets in steps of 3: anchors, positives, negatives
        a, p, n = (np.concatenate(part) for part in zip(*(np.split(b, 3) for b in batches), strict=True))
        assert sorted(a) == [0, 1, 3, 3]
        assert (labels[p] == labels[a]).all() and (labels[n] != labels[a]).all()
        if pool == "split":  # never the anchor's own image, even listed under another row
            assert (images[p] != images[a]).all()
        own += int((p == a).sum())
    assert (own > 0) == (pool == "study")  # the study lets an anchor be its own positive


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
    method = triplet(4, n_classes=2, pool=pool)
    data = decoded_splits(decoded, split_tables, pool_table if pool == "study" else None, size=4)
    train_rows = draws(data["train"], method)
    # Pixels are their own manifest row, so what training sees is what the tables name.
    assert (data["train"].pixels[:, 0, 0, 0] == (np.arange(12) if pool == "study" else np.arange(6))).all()
    if pool == "split":
        assert train_rows <= set(range(6))
    else:
        assert set(range(8, 12)) <= train_rows  # the study's pool holds the test rows
        assert set(data["train"].anchors) == set(range(6))
    # Validation (the epoch's selection) never sees a test image, under either pool: its triplets come
    # from the validation images alone, and its pixels are theirs.
    assert draws(data["val"], method) == {6, 7}
    assert data["val"].pixels[:, 0, 0, 0].tolist() == [6, 7]
