"""Each method's loss (and head) against a computation by hand or a naive loop: cross-entropy of a
linear head, the triplet margin loss on a batch laid out as anchors, positives, negatives, batch-hard
mining, SupCon (in float32 under bf16 autocast) and the cosine classifier."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stages.lib.losses import (
    ClassificationTraining,
    CosineClassifier,
    NormSoftmaxTraining,
    SupConTraining,
    TripletBatchHardTraining,
    TripletTraining,
)
from stages.lib.methods.classification import ClassificationParams
from stages.lib.methods.normsoftmax import NormSoftmaxParams
from stages.lib.methods.supcon import SupConParams
from stages.lib.methods.triplet import TripletParams
from stages.lib.methods.triplet_batch_hard import TripletBatchHardParams

LABELS_2X2 = torch.tensor([0, 0, 1, 1])


def batch_hard(margin: float = 1.0) -> TripletBatchHardTraining:
    return TripletBatchHardTraining(TripletBatchHardParams(batch_size=8, images_per_class=2, margin=margin), 2, 2)


def supcon(temperature: float) -> SupConTraining:
    return SupConTraining(SupConParams(batch_size=8, images_per_class=2, temperature=temperature), 2, 2)


def test_classification_is_cross_entropy_of_a_linear_head():
    torch.manual_seed(0)
    method = ClassificationTraining(ClassificationParams(batch_size=4), n_classes=3, embed_dim=5)
    head = method.head()
    assert isinstance(head, nn.Linear) and head.in_features == 5 and head.out_features == 3
    x = torch.randn(4, 5)
    y = torch.tensor([0, 2, 1, 2])
    logits = x @ head.weight.T + head.bias
    naive = -(logits.log_softmax(1)[torch.arange(4), y]).mean()
    assert torch.allclose(method.loss(x, y, head), naive)


def test_the_triplet_loss_matches_a_naive_loop():
    torch.manual_seed(0)
    method = TripletTraining(TripletParams(batch_size=3, margin=1.0), n_classes=3, embed_dim=6)
    a, p, n = torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 6)
    naive = []
    for i in range(3):
        d_ap = torch.sqrt(((a[i] - p[i] + 1e-7) ** 2).sum())  # torch's pairwise_distance adds eps
        d_an = torch.sqrt(((a[i] - n[i] + 1e-7) ** 2).sum())
        naive.append(torch.clamp(d_ap - d_an + 1.0, min=0))
    loss = method.loss(torch.cat([a, p, n]), torch.zeros(9, dtype=torch.long), None)
    assert torch.allclose(loss, torch.stack(naive).mean(), atol=1e-6)


def test_the_triplet_margin_and_batch_layout_reach_the_loss():
    torch.manual_seed(0)
    a, p, n = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)  # four triplets: 12 rows
    for margin in (0.3, 2.5):
        method = TripletTraining(TripletParams(batch_size=4, margin=margin), n_classes=2, embed_dim=6)
        naive = torch.clamp((a - p + 1e-7).norm(dim=1) - (a - n + 1e-7).norm(dim=1) + margin, min=0).mean()
        torch.testing.assert_close(method.loss(torch.cat([a, p, n]), torch.zeros(12, dtype=torch.long), None), naive)


def test_batch_hard_takes_the_farthest_positive_and_nearest_negative_of_each_anchor():
    # class 0: a=(0,0), b=(3,0); class 1: c=(0,1), d=(4,0); raw Euclidean distances, margin 1
    # a: pos b 3, neg min(c 1, d 4) = 1 -> 3 - 1 + 1 = 3;  b: pos a 3, neg min(c sqrt10, d 1) = 1 -> 3
    # c: pos d sqrt17, neg min(a 1, b sqrt10) = 1 -> sqrt17;  d: pos c sqrt17, neg min(a 4, b 1) = 1 -> sqrt17
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [4.0, 0.0]])
    expected = (3 + 3 + 2 * math.sqrt(17)) / 4
    assert batch_hard().loss(x, LABELS_2X2, None).item() == pytest.approx(expected, rel=1e-6)


def test_batch_hard_averages_over_every_anchor_not_only_the_violating_ones():
    # a=(0,0), b=(1,0) | c=(5,0), d=(5,3.5): only c violates: pos d 3.5, neg b 4 -> 0.5; mean over 4 anchors
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [5.0, 3.5]])
    assert batch_hard().loss(x, LABELS_2X2, None).item() == pytest.approx(0.125, rel=1e-6)


def test_batch_hard_uses_raw_not_normalised_embeddings():
    # The first case scaled by 10: the distances scale, the margin does not (normalising would undo the scale).
    # a, b: 30 - 10 + 1 = 21;  c, d: 10 sqrt17 - 10 + 1
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [4.0, 0.0]])
    expected = (21 + 21 + 2 * (10 * math.sqrt(17) - 9)) / 4
    assert batch_hard().loss(10 * x, LABELS_2X2, None).item() == pytest.approx(expected, rel=1e-6)


def test_batch_hard_gradient_is_finite_for_identical_embeddings():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.5, 0.0], [0.5, 0.0]], requires_grad=True)
    loss = batch_hard().loss(x, LABELS_2X2, None)  # every anchor: pos 0, neg 0.5 -> 0.5
    loss.backward()
    assert loss.item() == pytest.approx(0.5) and torch.isfinite(x.grad).all()


def test_supcon_matches_the_closed_form():
    # Directions (1,0),(0,1) | (-1,0),(0,-1) (lengths differ: the loss normalises). For every anchor the
    # other images have cosines 0 (its positive), -1 and 0 (negatives):
    # loss = -log(e^0 / (e^0 + e^(-1/t) + e^0)) = log(2 + e^(-1/t))
    x = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -5.0]])
    for t in (0.1, 0.5):
        assert supcon(t).loss(x, LABELS_2X2, None).item() == pytest.approx(math.log(2 + math.exp(-1 / t)), rel=1e-5)


def test_supcon_averages_the_log_probability_over_each_anchors_positives():
    # Three of class 0 at angles 0, 90, 180 degrees, one of class 1 at 270; temperature 1.
    # anchor 0: cosines to 1, 2 (pos), 3 (neg) = 0, -1, 0; log-denominator L = log(e^0 + e^-1 + e^0)
    #   loss_0 = -((0 - L) + (-1 - L)) / 2 = L + 1/2; anchor 2 is the same by symmetry
    # anchor 1: cosines to 0, 2 (pos), 3 (neg) = 0, 0, -1 -> the same L, loss_1 = L
    # anchor 3 has no positive and is left out: mean = (3L + 1) / 3
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    big = math.log(2 + math.exp(-1))
    assert supcon(1.0).loss(x, torch.tensor([0, 0, 0, 1]), None).item() == pytest.approx((3 * big + 1) / 3, rel=1e-5)


def test_normsoftmax_is_cross_entropy_of_cosines_over_the_temperature():
    # Class weights (2,0) and (0,3) -> unit (1,0), (0,1). Temperature 0.5:
    # x=(2,0), label 0: logits (1, 0)/0.5 = (2, 0) -> log(1 + e^-2)
    # x=(0,-1), label 1: logits (0, -1)/0.5 = (0, -2) -> log(1 + e^2)
    method = NormSoftmaxTraining(NormSoftmaxParams(batch_size=8, temperature=0.5), n_classes=2, embed_dim=2)
    head = method.head()
    assert isinstance(head, CosineClassifier) and [n for n, _ in head.named_parameters()] == ["weight"]
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    x = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
    assert method.loss(x, torch.tensor([0, 1]), head).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_runs_in_float32_under_bf16_autocast():
    x = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -5.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = supcon(0.1).loss(x.bfloat16(), LABELS_2X2, None)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(math.log(2 + math.exp(-10)), rel=1e-5)
