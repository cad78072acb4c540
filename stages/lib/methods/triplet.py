"""Supervised contrastive fine-tuning with triplets, sampled as the study did."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stages.lib.methods.base import Method, register_method
from stages.lib.validate import require


@dataclass(frozen=True)
class TripletParams:
    """`triplet`: triplets per batch (the study: 64) and the margin (the study: 1.0)."""

    batch_size: int
    margin: float

    def check(self, where: str) -> None:
        require(self.batch_size >= 1, f"{where}.batch_size", "an integer >= 1", self.batch_size)
        require(self.margin > 0, f"{where}.margin", "a number > 0", self.margin)


def sample_triplets(
    labels: np.ndarray, rng: np.random.Generator, negative_labels: np.ndarray | None = None
) -> np.ndarray:
    """One triplet per anchor: (anchor, positive, negative) indices, shape (n, 3).

    Every image is an anchor once, in random order. The positive is another image of the
    anchor's class (the anchor itself only if it is alone); the negative is a random image of
    a random other class, or of `negative_labels[anchor]` when given (the study's lists).
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("triplets need at least two classes")
    members = {c: np.flatnonzero(labels == c) for c in classes}
    anchors = rng.permutation(len(labels))
    out = np.empty((len(labels), 3), dtype=np.int64)
    for row, anchor in enumerate(anchors):
        own = members[labels[anchor]]
        if len(own) > 1:
            pick = rng.integers(len(own) - 1)  # a draw among the class without the anchor
            positive = own[pick if pick < np.searchsorted(own, anchor) else pick + 1]
        else:
            positive = anchor
        if negative_labels is not None:
            negative_class = negative_labels[anchor]
        else:
            others = classes[classes != labels[anchor]]
            negative_class = others[rng.integers(len(others))]
        pool = members[negative_class]
        out[row] = (anchor, positive, pool[rng.integers(len(pool))])
    return out


@register_method("triplet")
class Triplet(Method):
    """`TripletMarginLoss(margin, p=2, eps=1e-7)` on raw embeddings; one forward per batch."""

    params_type = TripletParams
    indices_per_item = 3
    study_tables = {"train": "triplet_train", "val": "triplet_val"}  # split.source: annotations

    def __init__(self, params: TripletParams, n_classes: int, embed_dim: int) -> None:
        super().__init__(params, n_classes, embed_dim)
        self.criterion = nn.TripletMarginLoss(margin=params.margin, p=2, eps=1e-7)

    def epoch_batches(
        self, labels: np.ndarray, rng: np.random.Generator, negative_labels: np.ndarray | None = None
    ) -> list[np.ndarray]:
        triplets = sample_triplets(labels, rng, negative_labels)
        size = self.params.batch_size
        # Each step's indices: its anchors, then its positives, then its negatives.
        return [triplets[i : i + size].T.reshape(-1) for i in range(0, len(triplets), size)]

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        anchor, positive, negative = embeddings.float().chunk(3)
        return self.criterion(anchor, positive, negative)
