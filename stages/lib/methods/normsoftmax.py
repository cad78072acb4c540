"""Normalised softmax: a cosine classifier with a temperature (Zhai & Wu 2019, "Classification is
a Strong Baseline for Deep Metric Learning")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.methods.base import Method, register_method, shuffled_batches
from stages.lib.validate import require

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class NormSoftmaxParams:
    """`normsoftmax`: images per batch and the softmax temperature (the paper: 0.05)."""

    batch_size: int
    temperature: float

    def check(self, where: str) -> None:
        require(self.batch_size >= 1, f"{where}.batch_size", "an integer >= 1", self.batch_size)
        require(self.temperature > 0, f"{where}.temperature", "a number > 0", self.temperature)


@register_method("normsoftmax")
class NormSoftmax(Method):
    """A `CosineClassifier` head (trained and checkpointed with the backbone) and cross-entropy,
    shuffled batches of images as the classification method."""

    params_type = NormSoftmaxParams

    def head(self) -> nn.Module:
        from stages.lib.methods.heads import CosineClassifier

        return CosineClassifier(self.embed_dim, self.n_classes, self.params.temperature)

    def epoch_batches(self, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        return shuffled_batches(len(labels), self.params.batch_size, rng)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        assert head is not None
        import torch
        import torch.nn.functional as F

        with torch.autocast(embeddings.device.type, enabled=False):  # logits / temperature in float32
            return F.cross_entropy(head(embeddings.float()), labels)
