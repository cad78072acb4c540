"""Class-balanced P x K batches for the in-batch losses (batch-hard triplets, SupCon).

Each batch holds P classes with K images each, so every image has K - 1 positives and
(P - 1) * K negatives in its batch. The batches come only from the epoch's numpy `rng`
(no python or torch global RNG), so the same rng gives the same batches.
"""

from __future__ import annotations

import math

import numpy as np

from stages.lib.methods.base import Range
from stages.lib.validate import require


def check_balanced(where: str, batch_size: int, images_per_class: int) -> None:
    """Validate a method's `batch_size` and `images_per_class` (>= 2 classes of >= 2 images per batch)."""
    require(images_per_class >= 2, f"{where}.images_per_class", "an integer >= 2 (an image needs a positive)",
            images_per_class)
    require(batch_size >= 2 * images_per_class, f"{where}.batch_size",
            f"an integer >= 2 * images_per_class = {2 * images_per_class} (a batch needs two classes)", batch_size)


def images_per_class_range(batch_size: int) -> Range:
    """`tune`'s range of images per class (K) for a batch of `batch_size`: 2 to 16, and at most half
    the batch (a batch needs two classes, `check_balanced`)."""
    return Range(2, max(2, min(16, batch_size // 2)), integer=True)


def batch_shape(n_classes: int, batch_size: int, images_per_class: int) -> tuple[int, int]:
    """(P, K): P = batch_size // images_per_class classes of K = images_per_class images, except that a
    split with fewer classes than that puts every class in every batch, with batch_size // n_classes each."""
    classes = min(batch_size // images_per_class, n_classes)
    return classes, batch_size // classes


def class_balanced_batches(
    labels: np.ndarray, rng: np.random.Generator, batch_size: int, images_per_class: int
) -> list[np.ndarray]:
    """Index arrays of P classes x K images each (`batch_shape`) for one epoch.

    The epoch has max(ceil(N / (P * K)), ceil(C / P)) batches, so it shows about N images and
    every class at least once. Classes are dealt from shuffled decks of all C classes (no class
    twice in a batch; every class about equally often), and each class hands out its images from
    its own shuffled queue, so a class's images all come round before any repeats. A class with
    fewer than K images gives all it has (no image twice in a batch: a copy would be a free
    positive at distance zero), so its batches are smaller than P x K.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("class-balanced batches need at least two classes")
    members = {c: np.flatnonzero(labels == c) for c in classes}
    p, k = batch_shape(len(classes), batch_size, images_per_class)
    n_batches = max(math.ceil(len(labels) / (p * k)), math.ceil(len(classes) / p))
    queues = {c: rng.permutation(members[c]) for c in classes}
    deck: list = []
    batches = []
    for _ in range(n_batches):
        chosen: list = []
        while len(chosen) < p:
            if not deck:
                deck = list(rng.permutation(classes))
            pick = next((i for i, c in enumerate(deck) if c not in chosen), None)
            if pick is None:  # the deck's rest is all in this batch already: deal from a fresh deck after it
                deck.extend(rng.permutation(classes))
                continue
            chosen.append(deck.pop(pick))
        parts = []
        for c in chosen:
            take = min(k, len(members[c]))
            queue = queues[c]
            if len(queue) < take:  # refill with a fresh shuffle, without what is still queued
                fresh = rng.permutation(members[c])
                queue = np.concatenate([queue, fresh[~np.isin(fresh, queue)]])
            parts.append(queue[:take])
            queues[c] = queue[take:]
        batches.append(np.concatenate(parts))
    return batches
