"""Methods: the registry, each loss against a naive computation, the triplet sampler."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from stages.lib.errors import PipelineError
from stages.lib.methods import METHODS
from stages.lib.methods.base import shuffled_batches
from stages.lib.methods.classification import Classification, ClassificationParams
from stages.lib.methods.triplet import Triplet, TripletParams, sample_triplets
from stages.lib.params import params_from_dict
from tests.helpers import tiny_params


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_builds_from_its_params_section(name):
    params = params_from_dict(tiny_params(methods=[name]))
    method = METHODS.get(name)(params.method_params(name), n_classes=3, embed_dim=8)
    assert method.name == name
    if method.trains:
        batches = method.epoch_batches(np.array([0, 0, 1, 1, 2, 2]), np.random.default_rng(0))
        assert all(len(b) > 0 for b in batches)


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(PipelineError, match=re.escape(", ".join(METHODS.names()))):
        METHODS.get("nope")
    assert {"classification", "pretrained", "triplet"} <= set(METHODS.names())


def test_classification_loss_is_cross_entropy_of_a_linear_head():
    torch.manual_seed(0)
    method = Classification(ClassificationParams(batch_size=4), n_classes=3, embed_dim=5)
    head = method.head()
    assert isinstance(head, nn.Linear) and head.in_features == 5 and head.out_features == 3
    x = torch.randn(4, 5)
    y = torch.tensor([0, 2, 1, 2])
    logits = x @ head.weight.T + head.bias
    naive = -(logits.log_softmax(1)[torch.arange(4), y]).mean()
    assert torch.allclose(method.loss(x, y, head), naive)


def test_triplet_loss_matches_a_naive_loop():
    torch.manual_seed(0)
    method = Triplet(TripletParams(batch_size=3, margin=1.0), n_classes=3, embed_dim=6)
    a, p, n = torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 6)
    naive = []
    for i in range(3):
        d_ap = torch.sqrt(((a[i] - p[i] + 1e-7) ** 2).sum())  # torch's pairwise_distance adds eps
        d_an = torch.sqrt(((a[i] - n[i] + 1e-7) ** 2).sum())
        naive.append(torch.clamp(d_ap - d_an + 1.0, min=0))
    loss = method.loss(torch.cat([a, p, n]), torch.zeros(9, dtype=torch.long), None)
    assert torch.allclose(loss, torch.stack(naive).mean(), atol=1e-6)


def test_sampled_triplets_follow_the_study():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 4)
    triplets = sample_triplets(labels, np.random.default_rng(0))
    assert sorted(triplets[:, 0]) == list(range(len(labels)))  # every image is an anchor once
    for anchor, positive, negative in triplets:
        assert labels[positive] == labels[anchor] and positive != anchor
        assert labels[negative] != labels[anchor]
    again = sample_triplets(labels, np.random.default_rng(0))
    assert (again == triplets).all()


def test_negative_classes_can_be_prescribed():
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


def test_triplet_batches_put_anchors_positives_negatives_side_by_side():
    labels = np.repeat(np.arange(3), 4)
    method = Triplet(TripletParams(batch_size=5, margin=1.0), n_classes=3, embed_dim=4)
    batches = method.epoch_batches(labels, np.random.default_rng(0))
    assert [len(b) for b in batches] == [15, 15, 6]
    for b in batches:
        a, p, n = np.split(b, 3)
        assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()


def test_shuffled_batches_cover_every_index_once():
    batches = shuffled_batches(10, 4, np.random.default_rng(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10))
