"""Classification fine-tuning: a linear layer on the embedding, cross-entropy (the study's baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.methods.base import Method, register_method, shuffled_batches
from stages.lib.validate import require

if TYPE_CHECKING:
    from stages.lib.trainer import SplitData


@dataclass(frozen=True)
class ClassificationParams:
    """`classification`: images per batch (the study: 128)."""

    batch_size: int

    def check(self, where: str) -> None:
        require(self.batch_size >= 1, f"{where}.batch_size", "an integer >= 1", self.batch_size)


@register_method("classification")
class Classification(Method):
    """Shuffled batches of images; `Linear(embed_dim, n_classes)` + `CrossEntropyLoss` (`stages.lib.losses`)."""

    params_type = ClassificationParams

    def split_batches(self, data: SplitData, rng: np.random.Generator) -> list[np.ndarray]:
        return shuffled_batches(len(data.labels), self.params.batch_size, rng)
