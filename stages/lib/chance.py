"""The chance level of K-means accuracy: what the Hungarian matching gives when the clustering
knows nothing of the classes. Pure functions, no I/O.

K-means accuracy matches clusters to classes one-to-one so as to maximise the matched images
(`stages.lib.metrics.matched_predictions`), so it is optimistic: on a small test set a clustering
independent of the classes scores well above 1 / classes. The chance level keeps one fitted
clustering as it is (its cluster of every image, hence its cluster sizes) and the test set's
class counts, permutes the labels over the images, and matches again: the permutations'
accuracies are that clustering's accuracies under "the clusters say nothing of the classes".
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

PERMUTATIONS = 200
QUANTILE = 0.95
# Image x permutation entries handled at once (int64 indices: 64 MiB).
CHUNK = 8_000_000


def permuted_accuracies(labels: np.ndarray, clusters: np.ndarray, *, permutations: int = PERMUTATIONS,
                        seed: int = 0) -> np.ndarray:
    """K-means accuracy of `clusters` against each of `permutations` seeded random permutations of
    `labels` (numpy's Generator(seed).permutation, one after the other).

    The same numbers as `metrics.matched_accuracy(rng.permutation(labels), clusters)` in a loop, in
    one vectorised pass: each permutation's contingency table (clusters x classes) comes from one
    `np.bincount` over a block of permutations, and scipy's `linear_sum_assignment` (the Hungarian
    method, as in `metrics`) matches each table. Memory: CHUNK entries at a time, whatever N."""
    labels = np.asarray(labels)
    clusters = np.asarray(clusters)
    if labels.shape != clusters.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels and clusters must be equal-length 1-D arrays, got {labels.shape}, {clusters.shape}")
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    n = len(labels)
    _, label_index = np.unique(labels, return_inverse=True)
    _, cluster_index = np.unique(clusters, return_inverse=True)
    n_classes, n_clusters = int(label_index.max()) + 1, int(cluster_index.max()) + 1
    cell = cluster_index * n_classes  # the table cell of image i is cell[i] + its (permuted) class
    cells = n_clusters * n_classes
    rng = np.random.default_rng(seed)
    accuracies = np.empty(permutations)
    step = max(1, CHUNK // n)
    for lo in range(0, permutations, step):
        hi = min(permutations, lo + step)
        # Row r: the class of every image under permutation lo + r, offset into its own table.
        flat = np.stack([label_index[rng.permutation(n)] for _ in range(lo, hi)])
        flat += cell[None, :]
        flat += (np.arange(hi - lo) * cells)[:, None]
        tables = np.bincount(flat.ravel(), minlength=(hi - lo) * cells).reshape(hi - lo, n_clusters, n_classes)
        for r, table in enumerate(tables):
            rows, cols = linear_sum_assignment(table, maximize=True)
            accuracies[lo + r] = table[rows, cols].sum() / n
    return accuracies


def chance_level(labels: np.ndarray, clusters: np.ndarray, *, permutations: int = PERMUTATIONS,
                 seed: int = 0) -> dict:
    """The chance level of one clustering's K-means accuracy on its test set: the mean and the 95th
    percentile (numpy's linear interpolation) of `permuted_accuracies`, with the number of
    permutations and their seed. An accuracy at or below `p95` is not distinguishable from a
    clustering that ignores the classes (one-sided, 5%)."""
    if permutations < 200:
        raise ValueError(f"a chance level needs at least 200 permutations, got {permutations}")
    acc = permuted_accuracies(labels, clusters, permutations=permutations, seed=seed)
    return {"mean": float(acc.mean()), "p95": float(np.quantile(acc, QUANTILE)), "permutations": permutations,
            "seed": seed}
