"""The validation score: one embedding metric on the validation images, the same for every method.

What `train.select` picks an epoch by (when it names a metric) and what `tune` scores each trial
with: the backbone embeds the split's `val.csv` images (never the test images, and never a method's
own validation lists or sampling pool, so every method is scored on the same images), then

- `val_kmeans`: K-means accuracy as the evaluate stage computes it on the test images (k = the
  validation classes, `KMEANS_N_INIT` initialisations from random_state `KMEANS_SEED`, clusters
  matched to classes by the Hungarian algorithm), on the raw embeddings;
- `val_map_at_r`, `val_precision_at_1`: leave-one-out retrieval on the validation images
  (Euclidean distance on the raw embeddings, as K-means), pytorch-metric-learning's formulas.

Higher is better for each. The metric code is `stages.lib.metrics`, the embedding code
`stages.lib.embedding`; this module only joins them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

# train.select: `loss` (each method's own validation loss, the study's), `last` (the last epoch), or
# one of the validation embedding metrics below.
METRICS = ("val_kmeans", "val_map_at_r", "val_precision_at_1")
RULES = ("loss", "last", *METRICS)
KMEANS_N_INIT = 10  # the study's evaluation
KMEANS_SEED = 0


def score_embeddings(embeddings: np.ndarray, labels: np.ndarray, metric: str) -> float:
    """`metric` (one of `METRICS`) of `embeddings` (N x D) with their `labels`; higher is better."""
    from stages.lib.metrics import kmeans_clusters, matched_accuracy, retrieval_scores

    labels = np.asarray(labels)
    if metric == "val_kmeans":
        clusters = kmeans_clusters(embeddings, len(np.unique(labels)), n_init=KMEANS_N_INIT, seed=KMEANS_SEED)
        return matched_accuracy(labels, clusters)
    if metric in ("val_map_at_r", "val_precision_at_1"):
        scores = retrieval_scores(embeddings, labels, knn_k=1, distance="euclidean")
        value = scores["map_at_r" if metric == "val_map_at_r" else "precision_at_1"]
        return float(value) if np.isfinite(value) else 0.0  # no class with two images: nothing retrieved
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


@dataclass
class Scorer:
    """Scores a backbone on the validation images: `pixels` (N x H x W x 3 uint8, e.g. the split's
    `val.csv` decoded) and their `labels`, embedded `batch_size` at a time in `precision` on `device`
    (`stages.lib.embedding.embed_pixels`: no augmentation, no gradients), then `metric`."""

    metric: str
    pixels: np.ndarray
    labels: np.ndarray
    device: torch.device
    batch_size: int = 256
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")

    def __call__(self, backbone: nn.Module) -> float:
        from stages.lib import embedding

        was_training = backbone.training
        try:
            x = embedding.embed_pixels(backbone, self.pixels, self.device, self.batch_size, self.precision)
        finally:
            backbone.train(was_training)
        if not np.isfinite(x).all():
            return float("-inf")  # a diverged model scores below every other
        return score_embeddings(x, self.labels, self.metric)
