"""Supervised contrastive loss (Khosla et al. 2020, "Supervised Contrastive Learning")."""

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

    @classmethod
    def search_space(cls, params: SupConParams, train) -> dict[str, Range]:
        return {**super().search_space(params, train), "supcon.temperature": Range(0.02, 0.5, log=True),
                "supcon.images_per_class": images_per_class_range(params.batch_size)}

    def split_batches(self, data: SplitData, rng: np.random.Generator) -> list[np.ndarray]:
        return class_balanced_batches(data.labels, rng, self.params.batch_size, self.params.images_per_class)
