"""The extra methods: triplet_batch_hard, supcon, normsoftmax.

Each loss against a small case worked by hand, the class-balanced sampler's shape, coverage and
determinism, and one epoch of `fit` per method on tiny random images with timm's test ConvNeXt.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch

from stages.lib.methods import METHODS
from stages.lib.methods.balanced import batch_shape, class_balanced_batches
from stages.lib.methods.heads import CosineClassifier
from stages.lib.methods.normsoftmax import NormSoftmax, NormSoftmaxParams
from stages.lib.methods.supcon import SupCon, SupConParams
from stages.lib.methods.triplet_batch_hard import TripletBatchHard, TripletBatchHardParams
from stages.lib.params import params_from_dict
from stages.lib.trainer import SplitData, fit
from tests.helpers import tiny_params

NEW = ["triplet_batch_hard", "supcon", "normsoftmax"]
LABELS_2X2 = torch.tensor([0, 0, 1, 1])


def batch_hard(margin: float = 1.0) -> TripletBatchHard:
    return TripletBatchHard(TripletBatchHardParams(batch_size=8, images_per_class=2, margin=margin), 2, 2)


# --- losses, worked by hand ----------------------------------------------------------------


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
        method = SupCon(SupConParams(batch_size=8, images_per_class=2, temperature=t), 2, 2)
        assert method.loss(x, LABELS_2X2, None).item() == pytest.approx(math.log(2 + math.exp(-1 / t)), rel=1e-5)


def test_supcon_averages_the_log_probability_over_each_anchors_positives():
    # Three of class 0 at angles 0, 90, 180 degrees, one of class 1 at 270; temperature 1.
    # anchor 0: cosines to 1, 2 (pos), 3 (neg) = 0, -1, 0; log-denominator L = log(e^0 + e^-1 + e^0)
    #   loss_0 = -((0 - L) + (-1 - L)) / 2 = L + 1/2; anchor 2 is the same by symmetry
    # anchor 1: cosines to 0, 2 (pos), 3 (neg) = 0, 0, -1 -> the same L, loss_1 = L
    # anchor 3 has no positive and is left out: mean = (3L + 1) / 3
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    method = SupCon(SupConParams(batch_size=8, images_per_class=2, temperature=1.0), 2, 2)
    big = math.log(2 + math.exp(-1))
    assert method.loss(x, torch.tensor([0, 0, 0, 1]), None).item() == pytest.approx((3 * big + 1) / 3, rel=1e-5)


def test_normsoftmax_is_cross_entropy_of_cosines_over_the_temperature():
    # Class weights (2,0) and (0,3) -> unit (1,0), (0,1). Temperature 0.5:
    # x=(2,0), label 0: logits (1, 0)/0.5 = (2, 0) -> log(1 + e^-2)
    # x=(0,-1), label 1: logits (0, -1)/0.5 = (0, -2) -> log(1 + e^2)
    method = NormSoftmax(NormSoftmaxParams(batch_size=8, temperature=0.5), n_classes=2, embed_dim=2)
    head = method.head()
    assert isinstance(head, CosineClassifier) and [n for n, _ in head.named_parameters()] == ["weight"]
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    x = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
    assert method.loss(x, torch.tensor([0, 1]), head).item() == pytest.approx(expected, rel=1e-6)


def test_the_losses_run_in_float32_under_bf16_autocast():
    x = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -5.0]])
    method = SupCon(SupConParams(batch_size=8, images_per_class=2, temperature=0.1), 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.loss(x.bfloat16(), LABELS_2X2, None)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(math.log(2 + math.exp(-10)), rel=1e-5)


# --- class-balanced batches ----------------------------------------------------------------


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


@pytest.mark.parametrize("name", NEW)
def test_defaults_are_valid_and_build(name):
    params = params_from_dict(tiny_params(methods=[name]))
    method = METHODS.get(name)(params.method_params(name), n_classes=3, embed_dim=8)
    assert method.name == name and method.indices_per_item == 1


@pytest.mark.parametrize(
    ("name", "section", "key"),
    [
        ("triplet_batch_hard", {"batch_size": 8, "images_per_class": 1, "margin": 1.0}, "images_per_class"),
        ("triplet_batch_hard", {"batch_size": 6, "images_per_class": 4, "margin": 1.0}, "batch_size"),
        ("triplet_batch_hard", {"batch_size": 8, "images_per_class": 2, "margin": 0.0}, "margin"),
        ("supcon", {"batch_size": 8, "images_per_class": 2, "temperature": 0}, "temperature"),
        ("normsoftmax", {"batch_size": 0, "temperature": 0.05}, "batch_size"),
        ("normsoftmax", {"batch_size": 8, "temperature": -1}, "temperature"),
    ],
)
def test_bad_settings_name_the_key(name, section, key):
    from stages.lib.errors import PipelineError

    with pytest.raises(PipelineError, match=f"{name}.{key}"):
        params_from_dict(tiny_params(methods=[name], **{name: section}))


# --- one epoch of training -----------------------------------------------------------------

SMALL = {
    "triplet_batch_hard": TripletBatchHardParams(batch_size=6, images_per_class=2, margin=1.0),
    "supcon": SupConParams(batch_size=6, images_per_class=2, temperature=0.1),
    "normsoftmax": NormSoftmaxParams(batch_size=6, temperature=0.05),
}


@pytest.mark.parametrize("name", NEW)
def test_one_epoch_of_fit(name):
    rng = np.random.default_rng(0)
    split = lambda n, per: SplitData(  # noqa: E731
        rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), np.arange(n, dtype=np.int64) // per
    )
    train, val = split(12, 4), split(6, 2)  # 3 classes: 4 training images each, 2 validation images each
    raw = tiny_params()
    raw["train"].update(epochs=1, warmup_epochs=0, cosine_t_max=1)
    params = params_from_dict(raw).train
    torch.manual_seed(0)
    backbone = timm.create_model("test_convnext", pretrained=False, num_classes=0)
    start = {k: v.clone() for k, v in backbone.state_dict().items()}
    method = METHODS.get(name)(SMALL[name], 3, backbone.num_features)
    result = fit(method, backbone, train, val, params, seed=0, device=torch.device("cpu"))
    assert result.best_epoch == 1 and math.isfinite(result.best_val_loss) and result.best_val_loss > 0
    assert any(not torch.equal(start[k], v) for k, v in result.backbone_state.items())
    if name == "normsoftmax":  # the class weights are trained and kept with the checkpoint
        assert result.head_state is not None and result.head_state["weight"].shape == (3, backbone.num_features)
    else:
        assert result.head_state is None
