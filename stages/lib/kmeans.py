"""K-means in torch, for large test sets on a GPU: scikit-learn's `KMeans` (k-means++ seeding, then
Lloyd's iterations, the best of `n_init` by inertia), step for step, on a torch device.

The evaluate stage clusters with scikit-learn on the CPU (`metrics.kmeans_clusters`); on a CUDA
device it clusters here instead, where a 1,000,000 x 768 test set takes seconds per
initialisation instead of minutes on the CPU cores while the GPU idles.

The same initialisations as scikit-learn's: one `numpy.random.RandomState(seed)` drives every
random choice, drawn in scikit-learn's order (for each of the `n_init` runs: the first centre by
`choice` with uniform weights, then `2 + int(log k)` uniform draws per further centre, the
candidate that lowers the potential most kept), so the centres chosen are the ones scikit-learn
chooses unless two candidates' potentials differ by float rounding alone. Lloyd's iterations as
scikit-learn's `_kmeans_single_lloyd`: on the data centred (per dimension) in float64, labels by
the nearest centre (|c|^2 - 2 x.c, the first of equals), an empty cluster given the point
farthest from its centre, stop when no label changes or when the centres move (sum of squared
shifts) by at most `tol` times the mean variance per dimension, then the labels of the final
centres. A run replaces the best so far only with a lower inertia and another partition.

What can differ from scikit-learn's: float rounding (a parallel sum on the GPU is not numpy's
sequential one), which may tip a near-tie in the seeding or a label at a boundary; measured
against scikit-learn in tests/lib/test_kmeans.py and by `benchmarks/gpu.sh` (the `kmeans 20,000`
row: the accuracy within 0.005). It adds nothing with atomics (the cluster sums are matrix
products), so run to run on one GPU it should repeat itself bit for bit; not yet checked on a GPU.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_BYTES = 2**28  # the distances of a chunk of rows to every centre, at most this much at a time


def _squared_distances(points: torch.Tensor, x: torch.Tensor, sq_norms: torch.Tensor) -> torch.Tensor:
    """|p - x|^2 for each of `points` (rows) against every row of `x`, as scikit-learn's
    `_euclidean_distances(squared=True)`: |p|^2 - 2 p.x + |x|^2, clipped at 0."""
    d = torch.addmm(sq_norms[None, :], points, x.T, alpha=-2)
    d += (points * points).sum(dim=1)[:, None]
    return d.clamp_min_(0)


def kmeans_plusplus(
    x: torch.Tensor, n_clusters: int, random_state: np.random.RandomState, sq_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices (on x's device) of the `n_clusters` rows of `x` chosen as starting centres by
    scikit-learn's greedy k-means++ (`sklearn.cluster.kmeans_plusplus`, unit sample weights),
    drawing from `random_state` exactly as it does."""
    n = len(x)
    if sq_norms is None:
        sq_norms = (x * x).sum(dim=1)
    trials = 2 + int(np.log(n_clusters))
    weights = np.ones(n)
    first = int(random_state.choice(n, p=weights / weights.sum()))
    chosen = [first]
    closest = _squared_distances(x[first : first + 1], x, sq_norms)[0]
    potential = closest.sum()
    for _ in range(1, n_clusters):
        draws = torch.from_numpy(random_state.uniform(size=trials)).to(x.device) * potential
        candidates = torch.searchsorted(torch.cumsum(closest, dim=0), draws).clamp_(max=n - 1)
        to_candidates = torch.minimum(closest[None, :], _squared_distances(x[candidates], x, sq_norms))
        potentials = to_candidates.sum(dim=1)
        best = int(torch.argmin(potentials))
        potential, closest = potentials[best], to_candidates[best]
        chosen.append(int(candidates[best]))
    return torch.tensor(chosen, device=x.device)


def _assign(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Each row's nearest centre (the first of equals), in chunks of rows."""
    c_sq = (centres * centres).sum(dim=1)
    step = max(1, CHUNK_BYTES // (x.element_size() * max(1, len(centres))))
    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    for lo in range(0, len(x), step):
        d = torch.addmm(c_sq[None, :], x[lo : lo + step], centres.T, alpha=-2)
        labels[lo : lo + step] = torch.argmin(d, dim=1)
    return labels


def _squared_to_own(x: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's squared distance to the centre it is labelled with, in chunks."""
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    step = max(1, CHUNK_BYTES // (x.element_size() * x.shape[1]))
    for lo in range(0, len(x), step):
        diff = x[lo : lo + step] - centres[labels[lo : lo + step]]
        out[lo : lo + step] = (diff * diff).sum(dim=1)
    return out


def _cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Each cluster's sum of its rows, as one-hot matrix products over chunks of rows: the same
    bits on every run (on a GPU `index_add_` adds with atomics, in no fixed order)."""
    sums = torch.zeros((k, x.shape[1]), dtype=x.dtype, device=x.device)
    clusters = torch.arange(k, device=x.device)
    step = max(1, CHUNK_BYTES // (x.element_size() * max(k, x.shape[1])))
    for lo in range(0, len(x), step):
        one_hot = (labels[lo : lo + step, None] == clusters[None, :]).to(x.dtype)
        sums.addmm_(one_hot.T, x[lo : lo + step])
    return sums


def lloyd(x: torch.Tensor, centres: torch.Tensor, *, tol: float, max_iter: int = 300) -> tuple[torch.Tensor, float]:
    """Lloyd's iterations from `centres` as scikit-learn's `_kmeans_single_lloyd` (see the module's
    docstring); the final labels and inertia (the sum of squared distances to the own centre)."""
    k = len(centres)
    previous = None
    converged = False
    for _ in range(max_iter):
        labels = _assign(x, centres)
        sums = _cluster_sums(x, labels, k)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):  # scikit-learn's `_relocate_empty_clusters_dense`: the farthest points
            far = torch.topk(_squared_to_own(x, centres, labels), len(empty)).indices
            for cluster, point in zip(empty.tolist(), far.tolist(), strict=True):
                old = int(labels[point])
                sums[old] -= x[point]
                counts[old] -= 1
                sums[cluster] = x[point]
                counts[cluster] = 1
        new = sums / torch.where(counts > 0, counts, 1)[:, None]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if previous is not None and torch.equal(labels, previous):
            converged = True
            break
        if shift <= tol:
            break
        previous = labels
    if not converged:
        labels = _assign(x, centres)
    return labels, float(_squared_to_own(x, centres, labels).sum())


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """scikit-learn's `_is_same_clustering`: each cluster of `a` is one cluster of `b`."""
    k = int(max(int(a.max()), int(b.max()))) + 1
    return len(torch.unique(a * k + b)) == len(torch.unique(a))


def kmeans_fit_predict(
    embeddings: np.ndarray, n_clusters: int, *, n_init: int, seed: int, device: torch.device,
    max_iter: int = 300, tol: float = 1e-4,
) -> np.ndarray:
    """Cluster ids (int32, as scikit-learn's) of `KMeans(n_clusters, n_init=n_init, random_state=seed)`
    on `embeddings`, computed in float64 on `device` (the input is copied there as it is and
    converted on the device: no float64 copy on the host)."""
    x = torch.as_tensor(np.asarray(embeddings)).to(device).to(torch.float64)
    if len(x) < n_clusters:
        raise ValueError(f"n_samples={len(x)} should be >= n_clusters={n_clusters}")
    x -= x.mean(dim=0)  # scikit-learn centres too: more accurate distances
    tolerance = float(x.var(dim=0, unbiased=False).mean()) * tol
    sq_norms = (x * x).sum(dim=1)
    random_state = np.random.RandomState(seed)
    best_labels, best_inertia = None, None
    for _ in range(n_init):
        start = kmeans_plusplus(x, n_clusters, random_state, sq_norms)
        labels, inertia = lloyd(x, x[start].clone(), tol=tolerance, max_iter=max_iter)
        if best_inertia is None or (inertia < best_inertia and not _same_partition(labels, best_labels)):
            best_labels, best_inertia = labels, inertia
    del x
    return best_labels.cpu().numpy().astype(np.int32)
