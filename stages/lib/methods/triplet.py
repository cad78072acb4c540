"""Supervised contrastive fine-tuning with triplets, sampled as the study did.

`triplet.pool` says where positives and negatives come from: `split` (default) draws them from the
split's own training images and never gives an anchor its own image as positive; `study` draws
them uniformly from every downloaded image of the named class, test images included, and lets an
anchor be its own positive: the study's exact sampling, kept to measure what it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from stages.lib.methods.base import Method, Range, register_method
from stages.lib.validate import require

if TYPE_CHECKING:
    from stages.lib.trainer import SplitData

POOLS = ("split", "study")


@dataclass(frozen=True)
class TripletParams:
    """`triplet`: triplets per batch (the study: 64), the margin (the study: 1.0) and the sampling pool."""

    batch_size: int
    margin: float
    pool: Literal["split", "study"] = "split"  # POOLS; the type refuses anything else

    def check(self, where: str) -> None:
        require(self.batch_size >= 1, f"{where}.batch_size", "an integer >= 1", self.batch_size)
        require(self.margin > 0, f"{where}.margin", "a number > 0", self.margin)


def sample_triplets(
    labels: np.ndarray,
    rng: np.random.Generator,
    negative_labels: np.ndarray | None = None,
    *,
    anchors: np.ndarray | None = None,
    images: np.ndarray | None = None,
    self_positive: bool = False,
) -> np.ndarray:
    """One triplet per anchor: (anchor, positive, negative) indices into `labels`, shape (n, 3).

    `anchors` are indices into `labels` (None: every index), each used once, in random order;
    every index is in the pool that positives and negatives are drawn from. The positive is a
    uniform draw from the pool's images of the anchor's class: without `self_positive`, never an
    index showing the anchor's own image (`images` gives each index's image id, e.g. its manifest
    row, so an image listed twice is still the anchor's own; the anchor itself only if its class
    has no other image); with `self_positive` (the study), the anchor's own image may be drawn.
    The negative is a uniform draw from the pool's images of a random other class, or of
    `negative_labels[i]` for the i-th anchor when given (the study's lists).
    """
    labels = np.asarray(labels)
    anchors = np.arange(len(labels)) if anchors is None else np.asarray(anchors)
    images = np.arange(len(labels)) if images is None else np.asarray(images)
    if images.shape != labels.shape:
        raise ValueError(f"images must give one id per label, got {images.shape} for {labels.shape}")
    if negative_labels is not None and len(negative_labels) != len(anchors):
        raise ValueError(f"negative_labels must give one class per anchor, got {len(negative_labels)} for "
                         f"{len(anchors)}")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("triplets need at least two classes")
    members = {c: np.flatnonzero(labels == c) for c in classes}
    order = rng.permutation(len(anchors))
    out = np.empty((len(anchors), 3), dtype=np.int64)
    for row, position in enumerate(order):
        anchor = anchors[position]
        own = members[labels[anchor]]
        if not self_positive:
            own = own[images[own] != images[anchor]]
        positive = own[rng.integers(len(own))] if len(own) else anchor
        if negative_labels is not None:
            negative_class = negative_labels[position]
        else:
            others = classes[classes != labels[anchor]]
            negative_class = others[rng.integers(len(others))]
        pool = members[negative_class]
        out[row] = (anchor, positive, pool[rng.integers(len(pool))])
    return out


@register_method("triplet")
class Triplet(Method):
    """One triplet per listed image (`sample_triplets`), `batch_size` triplets per step, embedded in one
    forward; `TripletMarginLoss(margin, p=2, eps=1e-7)` on the raw embeddings (`stages.lib.losses`)."""

    params_type = TripletParams
    indices_per_item = 3
    study_tables = {"train": "triplet_train", "val": "triplet_val"}  # split.source: annotations

    @property
    def pool(self) -> str:
        return self.params.pool

    @classmethod
    def search_space(cls, params: TripletParams, train) -> dict[str, Range]:
        return {**super().search_space(params, train), "triplet.margin": Range(0.05, 2.0, log=True)}

    def split_batches(self, data: SplitData, rng: np.random.Generator) -> list[np.ndarray]:
        triplets = sample_triplets(
            data.labels, rng, data.negative_labels, anchors=data.anchors, images=data.images,
            self_positive=self.pool == "study",
        )
        size = self.params.batch_size
        # Each step's indices: its anchors, then its positives, then its negatives.
        return [triplets[i : i + size].T.reshape(-1) for i in range(0, len(triplets), size)]
