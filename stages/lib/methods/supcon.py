"""Supervised contrastive loss (Khosla et al. 2020, "Supervised Contrastive Learning")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.methods.balanced import check_balanced, class_balanced_batches
from stages.lib.methods.base import Method, register_method
from stages.lib.validate import require

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class SupConParams:
    """`supcon`: images per batch, images per class in a batch (K), and the temperature."""

    batch_size: int
    images_per_class: int
    temperature: float

    def check(self, where: str) -> None:
        check_balanced(where, self.batch_size, self.images_per_class)
        require(self.temperature > 0, f"{where}.temperature", "a number > 0", self.temperature)


@register_method("supcon")
class SupCon(Method):
    """Class-balanced P x K batches, one forward per image; pytorch-metric-learning `SupConLoss`
    (the paper's L_out): cosine similarities of the L2-normalised embeddings over the temperature,
    for each anchor the mean over its positives of -log softmax against every other image in
    the batch, averaged over the anchors that have a positive."""

    params_type = SupConParams
    batch_wide = True  # every image is compared with the whole batch

    def __init__(self, params: SupConParams, n_classes: int, embed_dim: int) -> None:
        super().__init__(params, n_classes, embed_dim)
        from pytorch_metric_learning.losses import SupConLoss  # imported on use: optional on a bare GPU box

        self.criterion = SupConLoss(temperature=params.temperature)

    def epoch_batches(self, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        return class_balanced_batches(labels, rng, self.params.batch_size, self.params.images_per_class)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        import torch

        with torch.autocast(embeddings.device.type, enabled=False):  # similarities / temperature in float32
            return self.criterion(embeddings.float(), labels)
