"""Classification fine-tuning: a linear layer on the embedding, cross-entropy (the study's baseline)."""

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
class ClassificationParams:
    """`classification`: images per batch (the study: 128)."""

    batch_size: int

    def check(self, where: str) -> None:
        require(self.batch_size >= 1, f"{where}.batch_size", "an integer >= 1", self.batch_size)


@register_method("classification")
class Classification(Method):
    """`Linear(embed_dim, n_classes)` + `CrossEntropyLoss`, shuffled batches of images."""

    params_type = ClassificationParams

    def __init__(self, params: ClassificationParams, n_classes: int, embed_dim: int) -> None:
        super().__init__(params, n_classes, embed_dim)
        from torch import nn

        self.criterion = nn.CrossEntropyLoss()

    def head(self) -> nn.Module:
        from torch import nn

        return nn.Linear(self.embed_dim, self.n_classes)

    def epoch_batches(self, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        return shuffled_batches(len(labels), self.params.batch_size, rng)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        assert head is not None
        return self.criterion(head(embeddings).float(), labels)
