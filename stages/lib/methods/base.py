"""The contract every method fulfils, and the registry decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from stages.lib.registry import Registry

if TYPE_CHECKING:  # torch is imported where a method trains: the params check does not need it (1.3 s)
    import torch
    from torch import nn


class Method:
    """How to train: which head, which batches of indices, which loss on their embeddings.

    `epoch_batches` returns index arrays into the split (it may repeat indices, e.g. the
    anchors, positives and negatives of a triplet batch side by side); the trainer embeds
    each array in one forward pass and hands the embeddings to `loss`.
    """

    params_type: ClassVar[type]
    trains: ClassVar[bool] = True
    indices_per_item: ClassVar[int] = 1  # indices per loss term in a batch (3 for triplets)
    # A loss that compares the items of a batch with each other (not a mean of per-item terms): with
    # several processes it is computed on the whole global batch (stages.lib.distributed). Such a
    # method has no head.
    batch_wide: ClassVar[bool] = False
    name: ClassVar[str]
    # Split tables to train / validate on instead of `train` / `val` when the split stage wrote
    # them (the study's triplet lists). Their rows carry `negative_label`, which `epoch_batches`
    # then receives as `negative_labels=`.
    study_tables: ClassVar[dict[str, str]] = {}
    # Where a sampling method draws positives and negatives from (`triplet.pool`); None: no pool.
    pool: str | None = None

    def __init__(self, params: Any, n_classes: int, embed_dim: int) -> None:
        self.params = params
        self.n_classes = n_classes
        self.embed_dim = embed_dim

    def head(self) -> nn.Module | None:
        """Trainable layers on top of the embedding (None: the embedding alone)."""
        return None

    def epoch_batches(self, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Index arrays, one per optimiser step, for one pass over a split with these labels."""
        raise NotImplementedError

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        """Mean loss of one batch; `embeddings` and `labels` follow the batch's index array."""
        raise NotImplementedError

    def split_batches(self, data: Any, rng: np.random.Generator) -> list[np.ndarray]:
        """`epoch_batches` for a decoded split (`labels`, optional `negative_labels`)."""
        negatives = getattr(data, "negative_labels", None)
        if negatives is None:
            return self.epoch_batches(data.labels, rng)
        return self.epoch_batches(data.labels, rng, negative_labels=negatives)  # type: ignore[call-arg]


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Decorator: register a Method subclass under `name` (also its params.yaml section)."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.register(name)(cls)

    return add


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation of range(n) cut into batches (the last may be smaller)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
