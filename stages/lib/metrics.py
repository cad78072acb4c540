"""How good are embeddings? Pure functions: arrays in, numbers out, no I/O.

K-means accuracy is the study's measure: cluster the test embeddings into as many clusters as
classes, match clusters to classes one-to-one (Hungarian), count the images whose matched
cluster is their own class.

Beside it: its 95% bootstrap interval over test images, the spread of K-means accuracy over
single-initialisation K-means runs, every metric again on L2-normalised embeddings (the view that
suits methods trained on angles: SupCon, NormSoftmax), and leave-one-out retrieval on the test
set (precision@1, MAP@R as in Musgrave et al. 2020, "A Metric Learning Reality Check", and k-NN
accuracy), from pytorch-metric-learning's `AccuracyCalculator` with an exact k-NN
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


def matched_predictions(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each item's predicted class: the class its cluster is matched to, one-to-one, by the
    Hungarian algorithm (`linear_sum_assignment` on the negated contingency table); -1 for an item
    whose cluster is matched to no class (more clusters than classes)."""
    labels = np.asarray(labels)
    clusters = np.asarray(clusters)
    if labels.shape != clusters.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels and clusters must be equal-length 1-D arrays, got {labels.shape}, {clusters.shape}")
    class_ids, label_index = np.unique(labels, return_inverse=True)
    cluster_ids, cluster_index = np.unique(clusters, return_inverse=True)
    table = contingency_matrix(label_index, cluster_index)  # rows: classes, columns: clusters
    rows, cols = linear_sum_assignment(-table)
    class_of_cluster = np.full(len(cluster_ids), -1, dtype=np.int64)
    class_of_cluster[cols] = class_ids[rows]
    return class_of_cluster[cluster_index]


def matched_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of items whose cluster, matched one-to-one to a class by the Hungarian algorithm,
    is their own class (`matched_predictions`)."""
    return float(np.mean(matched_predictions(labels, clusters) == np.asarray(labels)))


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


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), in float64."""
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def evaluate_embeddings(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    n_init: int,
    seed: int,
    kmeans_repeats: int = 1,
    knn_k: int = 5,
    distance: str = "euclidean",
    bootstrap_resamples: int = 10_000,
    bootstrap_seed: int = 0,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Every metric of the evaluate stage, and the per-image results behind K-means accuracy.

    Scores: `kmeans_acc`, `nmi`, `ari` of the study's K-means run (random_state `seed`, best of
    `n_init` initialisations); `kmeans_acc_ci95`, the 95% bootstrap interval of that accuracy over
    test images (`bootstrap_resamples` resamples of its per-image right/wrong vector, seeded with
    `bootstrap_seed`); `kmeans_init_std`, how much the accuracy depends on where K-means starts:
    the population standard deviation (ddof 0) of `kmeans_repeats` single-initialisation runs with
    random_state seed .. seed + kmeans_repeats - 1 (single: a tenth of the study's run each); then
    `retrieval_scores`; and `l2`: the clustering and retrieval scores again on L2-normalised
    embeddings. Per image (`cluster`, `predicted`, `correct`, and the same with `_l2`): the K-means
    cluster, the class it is matched to (-1: none), and whether that is the image's class.
    """
    from stages.lib.stats import accuracy_ci

    labels = np.asarray(labels)
    n_classes = len(np.unique(labels))
    scores: dict = {}
    per_image: dict[str, np.ndarray] = {}
    for view, x in (("", embeddings), ("_l2", l2_normalise(embeddings))):
        clusters = kmeans_clusters(x, n_classes, n_init=n_init, seed=seed)
        predicted = matched_predictions(labels, clusters)
        correct = predicted == labels
        view_scores = {
            "kmeans_acc": float(correct.mean()),
            "kmeans_acc_ci95": accuracy_ci(correct, resamples=bootstrap_resamples, seed=bootstrap_seed),
            "nmi": float(normalized_mutual_info_score(labels, clusters)),
            "ari": float(adjusted_rand_score(labels, clusters)),
            **retrieval_scores(x, labels, knn_k=knn_k, distance=distance),
        }
        per_image.update({f"cluster{view}": clusters, f"predicted{view}": predicted, f"correct{view}": correct})
        if view:
            scores["l2"] = view_scores
        else:
            scores.update(view_scores)
            spread = kmeans_accuracies(x, labels, n_init=1, seeds=range(seed, seed + kmeans_repeats))
            scores["kmeans_init_std"] = float(np.std(spread))
    return scores, per_image


def embedding_scores(embeddings: np.ndarray, labels: np.ndarray, **settings) -> dict:
    """The scores of `evaluate_embeddings` (same settings), without the per-image results."""
    return evaluate_embeddings(embeddings, labels, **settings)[0]
