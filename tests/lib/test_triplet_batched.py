"""One batched forward of [anchors, positives, negatives] is the study's three forward passes.

The study embedded anchors, positives and negatives in three separate forward passes; the
trainer embeds the triplet batch's index array (anchors, then positives, then negatives) in one
and the triplet loss (`stages.lib.losses`) chunks it. ConvNeXt normalises with LayerNorm (per image, never across the
batch) and the test model has no dropout or drop-path, so the two are the same mathematics:
the loss and every gradient must agree to float rounding, in train mode as in eval mode.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from timm.layers import DropPath
from torch import nn

from stages.lib.device import normalise, to_device
from stages.lib.losses import TripletTraining
from stages.lib.methods.triplet import TripletParams
from stages.lib.trainer import SplitData

SIZE = 32
N_IMAGES = 24
N_CLASSES = 4
BATCH = 5  # triplets per step: 24 anchors -> steps of 5, 5, 5, 5, 4


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_convnext", pretrained=False, num_classes=0)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N_IMAGES, SIZE, SIZE, 3), dtype=np.uint8), np.arange(N_IMAGES) % N_CLASSES


def test_the_test_model_has_nothing_random_or_batch_dependent():
    model = _backbone()
    for name, module in model.named_modules():
        assert not isinstance(module, nn.modules.batchnorm._BatchNorm), f"{name} normalises across the batch"
        if isinstance(module, nn.Dropout):
            assert module.p == 0, f"{name} drops with p={module.p}"
        if isinstance(module, DropPath):
            assert module.drop_prob == 0, f"{name} drops paths with p={module.drop_prob}"
    assert any(isinstance(m, nn.LayerNorm) for m in model.modules())
    model.train()
    x = torch.randn(3, 3, SIZE, SIZE)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)  # train mode is deterministic


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_one_batched_forward_equals_three_forwards(data, mode):
    pixels, labels = data
    cpu = torch.device("cpu")
    method = TripletTraining(TripletParams(batch_size=BATCH, margin=1.0), N_CLASSES, 64)
    batches = method.split_batches(SplitData(pixels, labels), np.random.default_rng(3))
    flip_rng = np.random.default_rng(5)
    batched, separate = _backbone(), _backbone()
    getattr(batched, mode)()
    getattr(separate, mode)()
    for index in batches:
        flip = torch.from_numpy(flip_rng.random(len(index)) < 0.5)
        x = normalise(to_device(pixels[index], cpu), flip)
        target = torch.from_numpy(labels[index])

        # Ours, as the trainer does it: one forward over the whole index array.
        batched.zero_grad(set_to_none=True)
        loss_batched = method.loss(batched(x), target, None)
        loss_batched.backward()

        # The study's way: anchors, positives and negatives through the model one after another.
        separate.zero_grad(set_to_none=True)
        anchor, positive, negative = x.chunk(3)
        criterion = nn.TripletMarginLoss(margin=1.0, p=2, eps=1e-7)
        loss_separate = criterion(separate(anchor), separate(positive), separate(negative))
        loss_separate.backward()

        assert loss_separate.item() > 0  # a real loss with real gradients, not a clipped zero
        torch.testing.assert_close(loss_batched, loss_separate, rtol=1e-5, atol=1e-6)
        ours, theirs = _grads(batched), _grads(separate)
        assert ours.keys() == theirs.keys()
        scale = max(g.abs().max().item() for g in theirs.values())  # float rounding is relative to this
        for name in ours:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5 * scale,
                                       msg=lambda m, name=name: f"{name}: {m}")
        assert sum(g.abs().sum().item() for g in ours.values()) > 0
