"""The batches of the methods that do not sample triplets: shuffled batches of images (classification,
normsoftmax) and class-balanced P x K batches (batch-hard triplets, SupCon): their shape, coverage,
no image twice in a batch, and the same batches from the same rng."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages.lib.methods.balanced import batch_shape, class_balanced_batches
from stages.lib.methods.base import shuffled_batches


def test_shuffled_batches_cover_every_index_once():
    batches = shuffled_batches(10, 4, np.random.default_rng(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10))


def test_every_batch_has_p_classes_of_k_images_and_every_image_comes_round():
    labels = np.repeat(np.arange(6), [8, 8, 12, 8, 10, 8])
    batches = class_balanced_batches(labels, np.random.default_rng(0), batch_size=12, images_per_class=4)
    assert len(batches) == math.ceil(len(labels) / 12)
    for b in batches:
        classes, counts = np.unique(labels[b], return_counts=True)
        assert len(classes) == 3 and (counts == 4).all()
        assert len(set(b.tolist())) == len(b)  # no image twice in a batch
    seen = np.concatenate(batches)
    assert set(labels[seen]) == set(range(6))  # every class appears over the epoch
    for c in (0, 1, 3, 5):  # 8 images each, dealt 4 at a time: all seen before any repeats
        shown = [i for i in seen if labels[i] == c]
        assert len(set(shown[:8])) == min(8, len(shown))


def test_the_same_rng_gives_the_same_batches_and_another_does_not():
    labels = np.repeat(np.arange(5), 9)
    first = class_balanced_batches(labels, np.random.default_rng(3), 8, 2)
    again = class_balanced_batches(labels, np.random.default_rng(3), 8, 2)
    other = class_balanced_batches(labels, np.random.default_rng(4), 8, 2)
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(first, other, strict=True))


def test_every_class_appears_even_when_the_split_is_smaller_than_a_batch():
    labels = np.repeat(np.arange(7), 2)  # 14 images, but 3 classes per batch: 3 batches to show all 7
    batches = class_balanced_batches(labels, np.random.default_rng(0), batch_size=6, images_per_class=2)
    assert len(batches) == 3
    assert set(labels[np.concatenate(batches)]) == set(range(7))
    assert all(len(np.unique(labels[b])) == 3 for b in batches)


def test_fewer_classes_than_p_puts_every_class_in_every_batch_with_more_images_each():
    assert batch_shape(n_classes=5, batch_size=128, images_per_class=4) == (5, 25)
    assert batch_shape(n_classes=37, batch_size=128, images_per_class=4) == (32, 4)
    labels = np.repeat(np.arange(3), 10)
    for b in class_balanced_batches(labels, np.random.default_rng(0), batch_size=12, images_per_class=2):
        assert (np.unique(labels[b], return_counts=True)[1] == 4).all()


def test_a_class_smaller_than_k_gives_all_its_images_once():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 1)  # a small validation split
    for b in class_balanced_batches(labels, np.random.default_rng(0), batch_size=12, images_per_class=4):
        counts = dict(zip(*np.unique(labels[b], return_counts=True), strict=True))
        assert counts == {0: 4, 1: 2, 2: 1}
        assert len(set(b.tolist())) == len(b)


def test_two_classes_are_enough_and_one_is_refused():
    two = np.array([0, 0, 1, 1])
    assert sorted(np.concatenate(class_balanced_batches(two, np.random.default_rng(0), 4, 2))) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="^class-balanced batches need at least two classes$"):
        class_balanced_batches(np.zeros(4, dtype=int), np.random.default_rng(0), 4, 2)


def test_no_image_twice_in_a_batch_when_a_class_does_not_divide_into_k():
    labels = np.repeat(np.arange(3), [5, 3, 7])  # 5 and 7 images dealt 2 at a time: queues run short
    for seed in range(20):
        for batch in class_balanced_batches(labels, np.random.default_rng(seed), batch_size=6, images_per_class=2):
            assert len(set(batch.tolist())) == len(batch), (seed, batch)


def test_a_small_class_meets_new_partners_each_round():
    # Class 0 (4 images, K = 2) is in all 11 batches of the epoch: 5.5 rounds of its queue. Each round is a
    # fresh shuffle, so its images are paired differently from round to round, not in the same two pairs.
    labels = np.repeat([0, 1], [4, 40])
    for seed in range(5):
        batches = class_balanced_batches(labels, np.random.default_rng(seed), batch_size=4, images_per_class=2)
        pairs = {tuple(sorted(b[labels[b] == 0].tolist())) for b in batches}
        assert len(batches) == 11 and len(pairs) > 2, (seed, pairs)
