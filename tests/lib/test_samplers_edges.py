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
