"""The embedding's length as the methods' heads are sized: what the backbone really returns."""

from __future__ import annotations

import pytest
import timm
import torch

from stages.lib.losses import training
from stages.lib.methods.classification import ClassificationParams
from stages.lib.models import embedding_size


@pytest.mark.parametrize("name", ["test_convnext", "resnet10t", "mobilenetv3_small_050", "lcnet_050"])
def test_the_embedding_size_is_the_length_the_backbone_returns(name):
    backbone = timm.create_model(name, pretrained=False, num_classes=0).eval()
    with torch.no_grad():
        out = backbone(torch.zeros(2, 3, 32, 32))
    assert embedding_size(backbone) == out.shape[-1]


def test_a_classification_head_fits_a_backbone_with_a_layer_after_its_pooling():
    backbone = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=0).eval()
    assert backbone.num_features != embedding_size(backbone)  # the case that failed: 288 pooled, 1024 out
    method = training("classification")(ClassificationParams(batch_size=4), 3, embedding_size(backbone))
    with torch.no_grad():
        logits = method.head()(backbone(torch.zeros(2, 3, 32, 32)))
    assert logits.shape == (2, 3)
