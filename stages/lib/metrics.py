"""How good are embeddings? Pure functions: arrays in, numbers out, no I/O.

K-means accuracy is the study's measure: cluster the test embeddings into as many clusters as
classes, match clusters to classes one-to-one (Hungarian), count the images whose matched
cluster is their own class.

Beside it: its 95% bootstrap interval over test images, the spread of K-means accuracy over
single-initialisation K-means runs, every metric again on L2-normalised embeddings (the view that
suits methods trained on angles: SupCon, NormSoftmax), and leave-one-out retrieval on the test
set (precision@1, MAP@R as in Musgrave et al. 2020, "A Metric Learning Reality Check", and k-NN
accuracy): an exact k-NN in blocks of queries (torch, on the GPU when there is one; memory linear
in the test set), scored by pytorch-metric-learning's own precision@1 and MAP@R (no faiss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from stages.lib.device import block_bytes, compute_device


def kmeans_clusters(
    embeddings: np.ndarray, n_clusters: int, *, n_init: int, seed: int, overwrite: bool = False,
    device: torch.device | None = None,
) -> np.ndarray:
    """Cluster ids from scikit-learn's K-means (`random_state=seed`, `n_init` initialisations).

    On a float64 copy made here, which K-means centres in place (`copy_x=False`: the same bits as
    K-means centring a copy of its own, one N x D float64 copy fewer). `overwrite`: `embeddings` is
    a float64 array the caller no longer needs, used as it is (no copy at all).

    On a CUDA `device`: the same K-means in torch on the GPU (`stages.lib.kmeans`: scikit-learn's
    initialisations, float64; the same clustering but for float rounding at near-ties). Elsewhere
    (the CPU, the default) scikit-learn's."""
    if device is not None and device.type == "cuda":
        from stages.lib.kmeans import kmeans_fit_predict

        return kmeans_fit_predict(embeddings, n_clusters, n_init=n_init, seed=seed, device=device)
    x = np.asarray(embeddings, dtype=np.float64) if overwrite else np.array(embeddings, dtype=np.float64)
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, copy_x=False)
    return kmeans.fit_predict(x)


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
    embeddings: np.ndarray, labels: np.ndarray, *, n_init: int, seeds: Sequence[int],
    device: torch.device | None = None, n_clusters: int | None = None,
) -> list[float]:
    """K-means accuracy of one K-means run (k = `n_clusters`, default the number of classes in
    `labels`; `n_init` initialisations) per seed (on `device`, see `kmeans_clusters`)."""
    n_classes = n_clusters or len(np.unique(labels))
    return [matched_accuracy(labels, kmeans_clusters(embeddings, n_classes, n_init=n_init, seed=s, device=device))
            for s in seeds]


DISTANCES = ("euclidean", "cosine")  # `evaluate.distance`
# What the search ranks by: the two distances on the embeddings as they are, and the Euclidean
# distance between L2-normalised embeddings (the `l2` view's, which is the cosine ranking but
# for zero rows: those stay zero, at distance 0 from each other and 1 from every unit vector).
RANKINGS = (*DISTANCES, "euclidean_l2")


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
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    return retrieval_by_distance(embeddings, labels, knn_k=knn_k, distances=(distance,), device=device)[distance]


def retrieval_by_distance(
    embeddings: np.ndarray, labels: np.ndarray, *, knn_k: int, distances: Sequence[str] = DISTANCES,
    device: torch.device | None = None, cpu_product: str = "numpy",
) -> dict[str, dict[str, float]]:
    """`retrieval_scores` under each of `distances` (`RANKINGS`), from one pass over the data.

    Exact nearest neighbours, one block of queries at a time: the block's products with every
    item (one matrix product serves every ranking), each item's distance, the K nearest others
    (`torch.topk`, K = the largest class's other items, at least `knn_k`; equal distances in index
    order), then precision@1 and MAP@R on the block (`_block_precisions`: pytorch-metric-learning's
    formulas, vectorised) and `knn_vote`.
    Memory is the N x D embeddings plus, per query of a block, N scores and the K neighbours kept
    (`block_rows`), so it grows linearly with N; the block fits `device.block_bytes`. `device`:
    where to compute, by default the GPU when there is one (`device.compute_device`); the CPU gives
    the same numbers within float rounding. `cpu_product`: on the CPU, the block product through
    numpy's BLAS (`numpy`, faster there) or torch's (`torch`, the GPU's code; see `_matmul`).
    `euclidean_l2` is `euclidean` on `l2_normalise(embeddings)`, without making that copy.
    """
    unknown = [d for d in distances if d not in RANKINGS]
    if unknown or not distances:
        raise ValueError(f"distance must be one of {RANKINGS}, got {unknown[0] if unknown else 'none'!r}")
    x = np.asarray(embeddings)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),) or len(x) < 2:
        raise ValueError(f"need N x D embeddings and N labels with N >= 2, got {x.shape}, {labels.shape}")
    if cpu_product not in ("numpy", "torch"):
        raise ValueError(f"cpu_product must be numpy or torch, got {cpu_product!r}")
    device = device or compute_device()
    n = len(x)
    items = _Items(x, device, numpy_product=cpu_product == "numpy")
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    classes, counts = torch.unique(y, return_counts=True)
    k = min(max(int(counts.max()) - 1, knn_k), n - 1)  # neighbours kept per query: enough for R and for k
    votes = min(knn_k, n - 1)
    rows = block_rows(n, k, block_bytes(device))
    sums = {d: np.zeros(4) for d in dict.fromkeys(distances)}  # P@1, AP@R, queries with another item, k-NN hits
    last = list(sums)[-1]
    # Two blocks allocated once and written in place: a new block of this size per step is fresh
    # memory from the system every time, whose page faults cost as much as the distances themselves.
    block = torch.empty((rows, n), dtype=torch.float32, device=device)
    spare = torch.empty((rows, n), dtype=torch.float32, device=device) if len(sums) > 1 else None
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        products = items.products(lo, hi, out=block[: hi - lo])
        query_labels = y[lo:hi]
        others = counts[torch.searchsorted(classes, query_labels)] - 1  # R: the query's class's other items
        for name, total in sums.items():
            out = products if name == last else spare[: hi - lo]  # the last ranking overwrites the products
            order = _nearest(items.distances(name, products, lo, hi, out=out), lo, k)
            neighbour_labels = y[order]
            total[:3] += _block_precisions(neighbour_labels, query_labels, others)
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


# Bytes per query of a block for each neighbour kept (K per query, `_nearest` and
# `_block_precisions`): topk's float32 values and int64 indices (12), the neighbours' int64 labels
# (8), three bool masks (3), the int64 running count of hits and its product with the hits (16),
# their float64 copy (8); 47, rounded up.
NEIGHBOUR_BYTES = 48


def block_rows(n: int, k: int, budget: int) -> int:
    """Queries per block of the search of `n` items keeping `k` neighbours each, within `budget`
    bytes: per query three float32 rows of N (products, one ranking's distances, topk's work) and
    `NEIGHBOUR_BYTES` per neighbour kept (k + 1: one more to see ties at the k-th place). With one
    class of most of a large set K is most of N, and the neighbours outweigh the distances."""
    return max(1, min(n, budget // (3 * 4 * n + NEIGHBOUR_BYTES * (k + 1))))


def _block_precisions(neighbour_labels: torch.Tensor, query_labels: torch.Tensor, others: torch.Tensor) -> np.ndarray:
    """[sum of precision@1, sum of AP@R, queries counted] over a block's queries that have another
    item of their class (`others` = R > 0), from their neighbours' labels, nearest first (at least R
    columns). pytorch-metric-learning's `precision_at_k(k=1)` and `mean_average_precision(at_r=True)`
    (AP@R = (1/R) sum over the first R neighbours of precision-at-i where neighbour i is of the
    class), without their loop over every class per call (a fifth of the search's time at 30,000)."""
    counted = others > 0
    same = neighbour_labels == query_labels[:, None]
    ranks = torch.arange(1, same.shape[1] + 1, device=same.device)
    hits = same & (ranks[None, :] <= others[:, None])  # of the class, within the first R
    average = (hits.cumsum(dim=1) * hits).double().div_(ranks).sum(dim=1) / others.clamp_min(1)
    return np.array([float(same[counted, 0].sum()), float(average[counted].sum()), float(counted.sum())])


class _Items:
    """The embeddings, centred (a translation changes no Euclidean distance, and centring keeps
    float32 distances accurate) in float32 on the device, with what each distance needs per item.

    The angles (`cosine`, `euclidean_l2`) come from the same centred products, un-centred: their
    float32 error, relative to |x_i| |x_j|, grows as (1 + |mean| / |x_i|)(1 + |mean| / |x_j|). Where
    a non-zero row is shorter than a third of the mean vector (an error over 16 times a plain
    float32 product's), the angles come from an L2-normalised float32 copy instead (`unit`: one
    more N x D array and one more matrix product per block)."""

    SHORT = 1 / 3

    def __init__(self, x: np.ndarray, device: torch.device, numpy_product: bool = True) -> None:
        self.numpy_product = numpy_product  # on the CPU, `_matmul` through numpy's BLAS
        mean = x.mean(axis=0, dtype=np.float64)
        n = len(x)
        self.x = torch.empty(x.shape, dtype=torch.float32, device=device)
        norms = np.empty(n)
        step = max(1, 2**22 // max(1, x.shape[1]))  # in float64 32 MiB at a time: no N x D float64 copy
        for lo in range(0, n, step):
            part = x[lo : lo + step].astype(np.float64)
            norms[lo : lo + step] = np.linalg.norm(part, axis=1)
            self.x[lo : lo + step] = torch.from_numpy((part - mean).astype(np.float32))
        m = torch.from_numpy(mean.astype(np.float32)).to(device)
        self.squares = (self.x * self.x).sum(dim=1)  # |x - mean|^2
        self.shift = self.x @ m  # (x - mean) . mean
        self.offset = self.shift + (m * m).sum()  # x . x' = (x - mean) . (x' - mean) + shift + shift' + |mean|^2
        nonzero = norms > 0
        inverse = np.zeros(n)  # 0 for a zero row: it stays zero (written before the divide, which skips it)
        np.divide(1.0, norms, out=inverse, where=nonzero)
        self.inverse_norm = torch.from_numpy(inverse.astype(np.float32)).to(device)
        self.zero_row = torch.from_numpy((~nonzero).astype(np.float32) * 0.5).to(device)  # see `distances`
        self.unit = None
        if np.any(nonzero & (norms < self.SHORT * np.linalg.norm(mean))):
            self.unit = torch.empty(x.shape, dtype=torch.float32, device=device)
            for lo in range(0, n, step):
                part = x[lo : lo + step].astype(np.float64) * inverse[lo : lo + step, None]
                self.unit[lo : lo + step] = torch.from_numpy(part.astype(np.float32))

    def products(self, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """(x_i - mean) . (x_j - mean) for the queries i in [lo, hi) and every item j (into `out`,
        a (hi - lo) x N float32 block on the device, if given)."""
        return _matmul(self.x[lo:hi], self.x, out, numpy_on_cpu=self.numpy_product)

    def distances(
        self, name: str, products: torch.Tensor, lo: int, hi: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What is ranked along each query's row, smaller nearer, leaving out what is the same along
        a row: for `euclidean` |x_j|^2 - 2 x_i . x_j (the squared distance less |x_i|^2); for
        `cosine` minus the cosine similarity of the raw (uncentred) embeddings (0 with a zero row);
        for `euclidean_l2` half the squared distance of the L2-normalised embeddings less a half,
        which is minus the cosine between non-zero rows, and less a half again to a zero row (on
        the unit sphere a zero row is nearer than any unit vector). `out`: the block written into
        (of `products`' shape; `products` itself when no longer needed), else a new one."""
        if name == "euclidean":
            return torch.add(self.squares[None, :], products, alpha=-2, out=out)
        if self.unit is not None:
            out = _matmul(self.unit[lo:hi], self.unit, out, numpy_on_cpu=self.numpy_product)
        else:
            out = torch.add(products, self.shift[None, :], out=out)
            out.add_(self.offset[lo:hi, None]).mul_(self.inverse_norm[lo:hi, None]).mul_(self.inverse_norm[None, :])
        out.neg_()
        if name == "euclidean_l2" and bool(self.zero_row.any()):
            out.sub_(self.zero_row[None, :])
        return out


def _matmul(
    queries: torch.Tensor, items: torch.Tensor, out: torch.Tensor | None = None, *, numpy_on_cpu: bool = True
) -> torch.Tensor:
    """queries @ items.T (float32), into `out` if given. On the CPU through numpy's BLAS: numpy's
    wheels bring OpenBLAS, whose float32 product ran 1.45 times as fast as torch's MKL on this
    project's AMD CPU (a 223 x 768 by 768 x 100,000 block: 195 ms against 284 ms, 2 threads),
    and it is half of the search's time; on a GPU, torch's (`numpy_on_cpu=False`: torch's on the
    CPU too, how the tests run the GPU's product code here)."""
    if out is None:
        out = torch.empty((len(queries), len(items)), dtype=torch.float32, device=queries.device)
    if queries.device.type == "cpu" and numpy_on_cpu:
        np.matmul(queries.numpy(), items.numpy().T, out=out.numpy())
    else:
        torch.mm(queries, items.T, out=out)
    return out


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
    tied = (values[:, 1:] == values[:, :-1]).any(dim=1).nonzero().flatten()  # rows with equal distances
    if len(tied):  # put equal distances in index order: by index, then stably by distance
        v, i = values[tied], index[tied]
        by_index = torch.argsort(i, dim=1)
        v, i = v.gather(1, by_index), i.gather(1, by_index)
        index[tied] = i.gather(1, torch.sort(v, dim=1, stable=True).indices)
    return index


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), in float64."""
    x = np.array(embeddings, dtype=np.float64)  # a copy, divided in place
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.where(norms > 0, norms, 1.0)
    return x


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
    device: torch.device | None = None,
    n_clusters: int | None = None,
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
    K-means finds `n_clusters` clusters (default: the number of classes in `labels`; the evaluate
    stage passes the true class count when it scores against other labels, `evaluate.labels: study`).

    Both views' retrieval comes from one search (`retrieval_by_distance`: one matrix product per
    block serves both rankings; with `distance: cosine` the two views rank alike and are searched
    once), on `device` (default: the GPU when there is one), and K-means too: scikit-learn's on
    the CPU, the same in torch on a CUDA device (`kmeans_clusters`). Memory stays linear in N: the
    embeddings, one float64 copy for K-means at a time, and the search's blocks
    (`evaluate_bytes`: what it needs on a GPU).
    """
    from stages.lib.stats import accuracy_ci

    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    labels = np.asarray(labels)
    n_classes = n_clusters or len(np.unique(labels))
    device = device or compute_device()
    ranking = {"": distance, "_l2": "euclidean_l2" if distance == "euclidean" else "cosine"}
    retrieval = retrieval_by_distance(embeddings, labels, knn_k=knn_k, distances=tuple(ranking.values()),
                                      device=device)
    scores: dict = {}
    per_image: dict[str, np.ndarray] = {}
    for view in ("", "_l2"):
        x = l2_normalise(embeddings) if view else embeddings
        clusters = kmeans_clusters(x, n_classes, n_init=n_init, seed=seed, overwrite=bool(view),  # the L2 copy is ours
                                   device=device)
        predicted = matched_predictions(labels, clusters)
        correct = predicted == labels
        view_scores = {
            "kmeans_acc": float(correct.mean()),
            "kmeans_acc_ci95": accuracy_ci(correct, resamples=bootstrap_resamples, seed=bootstrap_seed),
            "nmi": float(normalized_mutual_info_score(labels, clusters)),
            "ari": float(adjusted_rand_score(labels, clusters)),
            **retrieval[ranking[view]],
        }
        per_image.update({f"cluster{view}": clusters, f"predicted{view}": predicted, f"correct{view}": correct})
        if view:
            scores["l2"] = view_scores
        else:
            scores.update(view_scores)
            spread = kmeans_accuracies(x, labels, n_init=1, seeds=range(seed, seed + kmeans_repeats), device=device,
                                       n_clusters=n_classes)
            scores["kmeans_init_std"] = float(np.std(spread))
        del x  # the L2-normalised copy, before the next one
    return scores, per_image


def evaluate_bytes(n: int, dim: int) -> int:
    """Device memory `evaluate_embeddings` needs for N x D embeddings on a GPU, beyond which the
    evaluate stage computes on the CPU (`device.compute_device`): the search's float32 copy and
    (rows far shorter than the mean) its L2-normalised one, K-means' float64 copy (4 + 4 + 8 bytes
    per value), and room for blocks of at least 64 queries (their N distances three times over)."""
    return n * dim * 16 + 64 * 3 * 4 * n + 2**28


def embedding_scores(embeddings: np.ndarray, labels: np.ndarray, **settings) -> dict:
    """The scores of `evaluate_embeddings` (same settings), without the per-image results."""
    return evaluate_embeddings(embeddings, labels, **settings)[0]
