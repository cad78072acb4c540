"""Triplet loss with batch-hard mining (Hermans et al. 2017, "In Defense of the Triplet Loss")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.methods.balanced import check_balanced, class_balanced_batches, images_per_class_range
from stages.lib.methods.base import Method, Range, register_method
from stages.lib.validate import require

if TYPE_CHECKING:
    from stages.lib.trainer import SplitData


@dataclass(frozen=True)
class TripletBatchHardParams:
    """`triplet_batch_hard`: images per batch, images per class in a batch (K), and the margin."""

    batch_size: int
    images_per_class: int
    margin: float

    def check(self, where: str) -> None:
        check_balanced(where, self.batch_size, self.images_per_class)
        require(self.margin > 0, f"{where}.margin", "a number > 0", self.margin)


@register_method("triplet_batch_hard")
class TripletBatchHard(Method):
    """Class-balanced P x K batches, one forward per image; every image is an anchor with its
    batch's farthest positive and nearest negative (pytorch-metric-learning `BatchHardMiner`),
    `TripletMarginLoss(margin)` on the raw (not L2-normalised) embeddings, as the study's triplet
    method, averaged over every anchor (zero-loss ones included)."""

    params_type = TripletBatchHardParams
    batch_wide = True  # every image is compared with the whole batch

    @classmethod
    def search_space(cls, params: TripletBatchHardParams, train) -> dict[str, Range]:
        return {**super().search_space(params, train), "triplet_batch_hard.margin": Range(0.05, 2.0, log=True),
                "triplet_batch_hard.images_per_class": images_per_class_range(params.batch_size)}

    def split_batches(self, data: SplitData, rng: np.random.Generator) -> list[np.ndarray]:
        return class_balanced_batches(data.labels, rng, self.params.batch_size, self.params.images_per_class)
