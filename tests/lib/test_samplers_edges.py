"""Edges of the triplet and class-balanced samplers that mutation testing found unchecked: a class
of two images, the two-class minimum (with its own message), the study's prescribed negatives
through `epoch_batches`, and the margin and batch layout reaching the triplet loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.lib.methods.balanced import class_balanced_batches
from stages.lib.methods.triplet import Triplet, TripletParams, sample_triplets
from stages.lib.trainer import SplitData


def test_in_a_class_of_two_each_image_is_the_others_positive():
    labels = np.array([0, 0, 1, 1, 1])
    for seed in range(5):
        for anchor, positive, _ in sample_triplets(labels, np.random.default_rng(seed)):
            if anchor < 2:
                assert positive == 1 - anchor


def test_two_classes_are_enough_and_one_is_refused():
    two = np.array([0, 0, 1, 1])
    assert len(sample_triplets(two, np.random.default_rng(0))) == 4
    assert sorted(np.concatenate(class_balanced_batches(two, np.random.default_rng(0), 4, 2))) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="^triplets need at least two classes$"):
        sample_triplets(np.zeros(4, dtype=int), np.random.default_rng(0))
    with pytest.raises(ValueError, match="^class-balanced batches need at least two classes$"):
        class_balanced_batches(np.zeros(4, dtype=int), np.random.default_rng(0), 4, 2)


def test_the_study_negatives_reach_the_batches():
    labels = np.repeat(np.arange(4), 3)
    negative = (labels + 2) % 4  # the study's lists name each anchor's negative class
    method = Triplet(TripletParams(batch_size=5, margin=1.0), n_classes=4, embed_dim=8)
    data = SplitData(np.zeros((12, 2, 2, 3), dtype=np.uint8), labels, negative)
    for batches in (method.epoch_batches(labels, np.random.default_rng(0), negative),
                    method.split_batches(data, np.random.default_rng(0))):
        for batch in batches:
            anchors, _, negatives = np.split(batch, 3)
            assert (labels[negatives] == negative[anchors]).all()


def test_the_margin_and_the_layout_reach_the_loss():
    torch.manual_seed(0)
    a, p, n = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)  # four triplets: 12 rows
    for margin in (0.3, 2.5):
        method = Triplet(TripletParams(batch_size=4, margin=margin), n_classes=2, embed_dim=6)
        naive = torch.clamp((a - p + 1e-7).norm(dim=1) - (a - n + 1e-7).norm(dim=1) + margin, min=0).mean()
        torch.testing.assert_close(method.loss(torch.cat([a, p, n]), torch.zeros(12, dtype=torch.long), None), naive)


def test_no_image_twice_in_a_batch_when_a_class_does_not_divide_into_k():
    labels = np.repeat(np.arange(3), [5, 3, 7])  # 5 and 7 images dealt 2 at a time: queues run short
    for seed in range(20):
        for batch in class_balanced_batches(labels, np.random.default_rng(seed), batch_size=6, images_per_class=2):
            assert len(set(batch.tolist())) == len(batch), (seed, batch)


@pytest.mark.parametrize("pool", ["split", "study"])
def test_listed_anchors_image_ids_and_the_pool_reach_the_triplets(pool):
    # Rows 0 and 1 are one image (id 10) listed twice; the list names rows 0, 1, 3 and 3 as anchors.
    labels, images, anchors = np.array([0, 0, 0, 1, 1]), np.array([10, 10, 11, 12, 13]), np.array([0, 1, 3, 3])
    method = Triplet(TripletParams(batch_size=3, margin=1.0, pool=pool), n_classes=2, embed_dim=4)
    data = SplitData(np.zeros((5, 2, 2, 3), dtype=np.uint8), labels, anchors=anchors, images=images)
    own = 0
    for seed in range(40):
        for batches in (method.epoch_batches(labels, np.random.default_rng(seed), anchors=anchors, images=images),
                        method.split_batches(data, np.random.default_rng(seed))):
            assert [len(b) for b in batches] == [9, 3]  # 4 triplets in steps of 3: anchors, positives, negatives
            a, p, n = (np.concatenate(part) for part in zip(*(np.split(b, 3) for b in batches), strict=True))
            assert sorted(a) == [0, 1, 3, 3]
            assert (labels[p] == labels[a]).all() and (labels[n] != labels[a]).all()
            if pool == "split":  # never the anchor's own image, even listed under another row
                assert (images[p] != images[a]).all()
            own += int((p == a).sum())
    assert (own > 0) == (pool == "study")  # the study lets an anchor be its own positive


def test_mismatched_image_ids_and_negatives_are_refused_exactly():
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError) as info:
        sample_triplets(labels, np.random.default_rng(0), images=np.arange(3))
    assert str(info.value) == "images must give one id per label, got (3,) for (4,)"
    with pytest.raises(ValueError) as info:
        sample_triplets(labels, np.random.default_rng(0), np.array([1, 0]))
    assert str(info.value) == "negative_labels must give one class per anchor, got 2 for 4"


def test_a_small_class_meets_new_partners_each_round():
    # Class 0 (4 images, K = 2) is in all 11 batches of the epoch: 5.5 rounds of its queue. Each round is a
    # fresh shuffle, so its images are paired differently from round to round, not in the same two pairs.
    labels = np.repeat([0, 1], [4, 40])
    for seed in range(5):
        batches = class_balanced_batches(labels, np.random.default_rng(seed), batch_size=4, images_per_class=2)
        pairs = {tuple(sorted(b[labels[b] == 0].tolist())) for b in batches}
        assert len(batches) == 11 and len(pairs) > 2, (seed, pairs)
