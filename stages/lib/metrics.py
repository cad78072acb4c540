"""How good are embeddings? Pure functions: arrays in, numbers out, no I/O.

K-means accuracy is the study's measure: cluster the test embeddings into as many clusters as
classes, match clusters to classes one-to-one (Hungarian), count the images whose matched
cluster is their own class.

Beside it: the spread of K-means accuracy over K-means seeds, and leave-one-out retrieval on
the test set (precision@1, MAP@R as in Musgrave et al. 2020, "A Metric Learning Reality Check",
and k-NN accuracy), from pytorch-metric-learning's `AccuracyCalculator` with an exact k-NN
(`CustomKNN`, no faiss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
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


def kmeans_accuracies(
    embeddings: np.ndarray, labels: np.ndarray, *, n_init: int, seeds: Sequence[int]
) -> list[float]:
    """K-means accuracy of one K-means run (k = number of classes, `n_init` initialisations) per seed."""
    n_classes = len(np.unique(labels))
    return [matched_accuracy(labels, kmeans_clusters(embeddings, n_classes, n_init=n_init, seed=s)) for s in seeds]


DISTANCES = ("euclidean", "cosine")
KNN_BATCH = 2048  # query rows per distance block: bounds memory at 2048 x N floats


def knn_vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Majority vote over each row of neighbour labels (nearest first); a tie goes to the tied
    class whose nearest member is nearest (the first in the row), never to the smaller label."""
    rows = np.asarray(neighbour_labels)
    votes = (rows[:, :, None] == rows[:, None, :]).sum(axis=2)  # votes for the class at each position
    return rows[np.arange(len(rows)), votes.argmax(axis=1)]  # argmax: the first (nearest) of the most voted


class _Retrieval(AccuracyCalculator):
    """pytorch-metric-learning's calculator plus leave-one-out k-NN accuracy (`knn_acc`)."""

    def __init__(self, knn_k: int, **kwargs) -> None:
        self.knn_k = knn_k
        super().__init__(**kwargs)

    def requires_knn(self) -> list[str]:
        return [*super().requires_knn(), "knn_acc"]

    def calculate_knn_acc(self, knn_labels: torch.Tensor, query_labels: torch.Tensor, **kwargs) -> float:
        predicted = knn_vote(knn_labels[:, : self.knn_k].cpu().numpy())
        return float(np.mean(predicted == query_labels.cpu().numpy()))


def retrieval_scores(
    embeddings: np.ndarray, labels: np.ndarray, *, knn_k: int, distance: str = "euclidean"
) -> dict[str, float]:
    """Leave-one-out retrieval on one set: each item queries all the others.

    - `precision_at_1`: the nearest other item has the query's class;
    - `map_at_r`: with R the number of other items of the query's class, (1/R) sum over the
      first R neighbours of precision-at-i where neighbour i is of the class;
    - `knn_acc`: the `knn_vote` of the `knn_k` nearest others (at most N - 1) is the query's class.
    The first two average over queries whose class has another item (pytorch-metric-learning's
    rule); `knn_acc` over every query. `distance`: euclidean on the raw embeddings (what K-means
    uses) or cosine.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),) or len(x) < 2:
        raise ValueError(f"need N x D embeddings and N labels with N >= 2, got {x.shape}, {labels.shape}")
    if distance == "euclidean":
        # Translation changes no Euclidean distance, and centring keeps float32 distances accurate.
        x = x - x.mean(axis=0)
        measure = LpDistance(p=2, power=1, normalize_embeddings=False)
    else:
        measure = CosineSimilarity()
    n = len(x)
    largest_class = int(np.unique(labels, return_counts=True)[1].max())
    calculator = _Retrieval(
        knn_k=min(knn_k, n - 1),
        include=("precision_at_1", "mean_average_precision_at_r", "knn_acc"),
        k=min(max(largest_class, knn_k), n - 1),  # neighbours kept per query: enough for R and for k
        device=torch.device("cpu"),
        knn_func=CustomKNN(measure, batch_size=KNN_BATCH),
    )
    out = calculator.get_accuracy(x.astype(np.float32), labels.astype(np.int64))
    return {
        "precision_at_1": float(out["precision_at_1"]),
        "map_at_r": float(out["mean_average_precision_at_r"]),
        "knn_acc": float(out["knn_acc"]),
    }


def embedding_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    n_init: int,
    seed: int,
    kmeans_repeats: int = 1,
    knn_k: int = 5,
    distance: str = "euclidean",
) -> dict[str, float]:
    """Every metric of the evaluate stage.

    `kmeans_acc`, `nmi`, `ari`: the study's K-means run (random_state `seed`, best of `n_init`
    initialisations). `kmeans_acc_std`: how much K-means accuracy depends on where K-means
    starts, the population standard deviation (ddof 0) of the accuracies of `kmeans_repeats`
    single-initialisation runs with random_state seed, seed + 1, ..., seed + kmeans_repeats - 1
    (single: each costs a tenth of the study's run, which is most of this function's time).
    Then `retrieval_scores`.
    """
    scores = clustering_scores(embeddings, labels, n_init=n_init, seed=seed)
    spread = kmeans_accuracies(embeddings, labels, n_init=1, seeds=range(seed, seed + kmeans_repeats))
    scores["kmeans_acc_std"] = float(np.std(spread))
    scores.update(retrieval_scores(embeddings, labels, knn_k=knn_k, distance=distance))
    return scores
