"""How good are embeddings? Pure functions: arrays in, numbers out, no I/O.

K-means accuracy is the study's measure: cluster the test embeddings into as many clusters as
classes, match clusters to classes one-to-one (Hungarian), count the images whose matched
cluster is their own class.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def kmeans_clusters(embeddings: np.ndarray, n_clusters: int, *, n_init: int, seed: int) -> np.ndarray:
    """Cluster ids from scikit-learn's K-means (`random_state=seed`, `n_init` initialisations)."""
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    return kmeans.fit_predict(np.asarray(embeddings, dtype=np.float64))


def matched_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of items whose cluster, matched one-to-one to a class by the Hungarian algorithm,
    is their own class (`linear_sum_assignment` on the negated contingency table)."""
    labels = np.asarray(labels)
    clusters = np.asarray(clusters)
    if labels.shape != clusters.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels and clusters must be equal-length 1-D arrays, got {labels.shape}, {clusters.shape}")
    table = contingency_matrix(labels, clusters)  # rows: classes, columns: clusters
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(labels))


def clustering_scores(
    embeddings: np.ndarray, labels: np.ndarray, *, n_init: int, seed: int
) -> dict[str, float]:
    """K-means accuracy, NMI and ARI of one K-means run with k = number of classes."""
    n_classes = len(np.unique(labels))
    clusters = kmeans_clusters(embeddings, n_classes, n_init=n_init, seed=seed)
    return {
        "kmeans_acc": matched_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }
