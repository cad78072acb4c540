"""How good are embeddings? Pure functions: arrays in, numbers out, no I/O.

K-means accuracy is the study's measure: cluster the test embeddings into as many clusters as
classes, match clusters to classes one-to-one (Hungarian), count the images whose matched
cluster is their own class.

Beside it: the spread of K-means accuracy over K-means seeds, and leave-one-out retrieval on
the test set (precision@1, MAP@R as in Musgrave et al. 2020, "A Metric Learning Reality Check",
and k-NN accuracy): an exact k-NN in blocks of queries (torch, on the GPU when there is one),
scored by pytorch-metric-learning's own precision@1 and MAP@R (no faiss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import mean_average_precision, precision_at_k
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from stages.lib.device import block_bytes, compute_device


def kmeans_clusters(embeddings: np.ndarray, n_clusters: int, *, n_init: int, seed: int) -> np.ndarray:
    """Cluster ids from scikit-learn's K-means (`random_state=seed`, `n_init` initialisations).

    On a float64 copy of our own, which K-means may centre in place (`copy_x=False`: the same
    clusters, one N x D float64 copy fewer)."""
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, copy_x=False)
    return kmeans.fit_predict(np.array(embeddings, dtype=np.float64, copy=True))


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


def knn_vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Majority vote over each row of neighbour labels (nearest first); a tie goes to the tied
    class whose nearest member is nearest (the first in the row), never to the smaller label."""
    rows = np.asarray(neighbour_labels)
    votes = (rows[:, :, None] == rows[:, None, :]).sum(axis=2)  # votes for the class at each position
    return rows[np.arange(len(rows)), votes.argmax(axis=1)]  # argmax: the first (nearest) of the most voted


def retrieval_scores(
    embeddings: np.ndarray, labels: np.ndarray, *, knn_k: int, distance: str = "euclidean",
    device: torch.device | None = None,
) -> dict[str, float]:
    """Leave-one-out retrieval on one set: each item queries all the others.

    - `precision_at_1`: the nearest other item has the query's class;
    - `map_at_r`: with R the number of other items of the query's class, (1/R) sum over the
      first R neighbours of precision-at-i where neighbour i is of the class;
    - `knn_acc`: the `knn_vote` of the `knn_k` nearest others (at most N - 1) is the query's class.
    The first two average over queries whose class has another item (pytorch-metric-learning's
    rule); `knn_acc` over every query. `distance`: euclidean on the raw embeddings (what K-means
    uses) or cosine. The search is exact and runs in blocks of queries (`retrieval_by_distance`).
    """
    return retrieval_by_distance(embeddings, labels, knn_k=knn_k, distances=(distance,), device=device)[distance]


def retrieval_by_distance(
    embeddings: np.ndarray, labels: np.ndarray, *, knn_k: int, distances: Sequence[str] = DISTANCES,
    device: torch.device | None = None,
) -> dict[str, dict[str, float]]:
    """`retrieval_scores` under each of `distances`, from one pass over the data.

    Exact nearest neighbours, one block of queries at a time: the block's products with every
    item (one matrix product serves both distances), each item's distance, the K nearest others
    (`torch.topk`, K = the largest class's other items, at least `knn_k`; equal distances in index
    order), then pytorch-metric-learning's own precision@1 and MAP@R on the block and `knn_vote`.
    Memory is the N x D embeddings plus a block of N scores per query, so it grows linearly with
    N; the block fits `device.block_bytes`. `device`: where to compute, by default the GPU when
    there is one (`device.compute_device`); the CPU gives the same numbers within float rounding.
    The cosine ranking of the raw embeddings is also the Euclidean ranking of L2-normalised ones.
    """
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown or not distances:
        raise ValueError(f"distance must be one of {DISTANCES}, got {unknown[0] if unknown else 'none'!r}")
    x = np.asarray(embeddings)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),) or len(x) < 2:
        raise ValueError(f"need N x D embeddings and N labels with N >= 2, got {x.shape}, {labels.shape}")
    device = device or compute_device()
    n = len(x)
    items = _Items(x, device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    classes, counts = torch.unique(y, return_counts=True)
    k = min(max(int(counts.max()) - 1, knn_k), n - 1)  # neighbours kept per query: enough for R and for k
    votes = min(knn_k, n - 1)
    rows = max(1, min(n, block_bytes(device) // (3 * 4 * n)))  # products, one distance and topk's work
    sums = {d: np.zeros(4) for d in distances}  # P@1 sum, AP@R sum, queries with another item, k-NN hits
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        products = items.products(lo, hi)
        query_labels = y[lo:hi]
        has_other = counts[torch.searchsorted(classes, query_labels)] > 1
        for name in distances:
            order = _nearest(items.distances(name, products, lo, hi), lo, k)
            neighbour_labels = y[order]
            total = sums[name]
            if bool(has_other.any()):
                mine, found = query_labels[has_other, None], neighbour_labels[has_other]
                m = int(has_other.sum())
                total[0] += m * precision_at_k(found, mine, 1, False, False, torch.eq)
                total[1] += m * mean_average_precision(found, mine, True, (classes, counts), False, False, torch.eq,
                                                       at_r=True)
                total[2] += m
            predicted = knn_vote(neighbour_labels[:, :votes].cpu().numpy())
            total[3] += int(np.sum(predicted == labels[lo:hi]))
    return {
        name: {
            "precision_at_1": float(t[0] / t[2]) if t[2] else float("nan"),
            "map_at_r": float(t[1] / t[2]) if t[2] else float("nan"),
            "knn_acc": float(t[3] / n),
        }
        for name, t in sums.items()
    }


class _Items:
    """The embeddings, centred (a translation changes no Euclidean distance, and centring keeps
    float32 distances accurate) in float32 on the device, with what each distance needs per item."""

    def __init__(self, x: np.ndarray, device: torch.device) -> None:
        mean = x.mean(axis=0, dtype=np.float64)
        self.x = torch.empty(x.shape, dtype=torch.float32, device=device)
        step = max(1, 2**22 // max(1, x.shape[1]))  # centred in float64 32 MiB at a time: no N x D float64 copy
        for lo in range(0, len(x), step):
            self.x[lo : lo + step] = torch.from_numpy((x[lo : lo + step].astype(np.float64) - mean).astype(np.float32))
        m = torch.from_numpy(mean.astype(np.float32)).to(device)
        self.squares = (self.x * self.x).sum(dim=1)  # |x - mean|^2
        self.shift = self.x @ m  # (x - mean) . mean
        self.offset = self.shift + (m * m).sum()  # x . x' = (x - mean) . (x' - mean) + shift + shift'+ |mean|^2
        self.minus_inverse_norm = -(self.squares + self.shift + self.offset).clamp_min(1e-30).rsqrt()  # -1 / |x|

    def products(self, lo: int, hi: int) -> torch.Tensor:
        """(x_i - mean) . (x_j - mean) for the queries i in [lo, hi) and every item j."""
        return self.x[lo:hi] @ self.x.T

    def distances(self, name: str, products: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """What is ranked along each query's row, smaller nearer, leaving out what is the same along
        a row: |x_j|^2 - 2 x_i . x_j (the squared Euclidean distance less |x_i|^2), or minus the
        cosine similarity of the raw (uncentred) embeddings times |x_i|. One pass or three."""
        if name == "euclidean":
            return torch.add(self.squares[None, :], products, alpha=-2)
        out = torch.add(products, self.shift[None, :])
        return out.add_(self.offset[lo:hi, None]).mul_(self.minus_inverse_norm[None, :])


def _nearest(distances: torch.Tensor, lo: int, k: int) -> torch.Tensor:
    """Indices of each query's k nearest other items, nearest first; equal distances in index order
    (also at the k-th place, where `topk` alone would choose among equal distances arbitrarily)."""
    rows = torch.arange(len(distances), device=distances.device)
    distances[rows, lo + rows] = float("inf")  # not itself
    spare = int(k < distances.shape[1] - 1)  # one more, to see equal distances across the k-th place
    values, index = torch.topk(distances, k + spare, dim=1, largest=False, sorted=True)
    if spare:
        torn = (values[:, k - 1] == values[:, k]).nonzero().flatten()
        values, index = values[:, :k], index[:, :k]
        for row in torn.tolist():  # rare: the whole row, sorted stably
            index[row] = torch.sort(distances[row], stable=True).indices[:k]
            values[row] = distances[row, index[row]]
    by_index = torch.argsort(index, dim=1)
    values, index = values.gather(1, by_index), index.gather(1, by_index)
    by_value = torch.sort(values, dim=1, stable=True).indices
    return index.gather(1, by_value)


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
