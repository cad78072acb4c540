"""Normalised softmax: a cosine classifier with a temperature (Zhai & Wu 2019, "Classification is
a Strong Baseline for Deep Metric Learning")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.methods.base import Method, Range, register_method, shuffled_batches
from stages.lib.validate import require

if TYPE_CHECKING:
    from stages.lib.trainer import SplitData


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
    """Shuffled batches of images as the classification method; a cosine classifier head (trained and
    checkpointed with the backbone) and cross-entropy (`stages.lib.losses`)."""

    params_type = NormSoftmaxParams

    @classmethod
    def search_space(cls, params: NormSoftmaxParams, train) -> dict[str, Range]:
        return {**super().search_space(params, train), "normsoftmax.temperature": Range(0.01, 0.2, log=True)}

    def split_batches(self, data: SplitData, rng: np.random.Generator) -> list[np.ndarray]:
        return shuffled_batches(len(data.labels), self.params.batch_size, rng)
