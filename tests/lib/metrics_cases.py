"""Cases and brute-force references shared by the metrics tests: leave-one-out retrieval scored
by a naive loop or from a full distance matrix, angle distances with zero rows, and overlapping
blobs."""

from __future__ import annotations

import numpy as np

from stages.lib import metrics


def naive(x: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    """Leave-one-out retrieval by brute force; P@1 and MAP@R skip queries alone in their class."""
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    p1, ap, knn = [], [], []
    for q in range(len(x)):
        order = [i for i in np.argsort(d[q], kind="stable") if i != q]
        rel = y[order] == y[q]
        r = int(rel.sum())
        top = list(y[order[:k]])
        counts = {c: top.count(c) for c in top}
        best = max(counts.values())
        knn.append(next(c for c in top if counts[c] == best) == y[q])
        if r == 0:
            continue
        p1.append(rel[0])
        hits = np.cumsum(rel[:r])
        ap.append(sum(hits[i] / (i + 1) for i in range(r) if rel[i]) / r)
    return {"precision_at_1": float(np.mean(p1)), "map_at_r": float(np.mean(ap)), "knn_acc": float(np.mean(knn))}



def ranked(d: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    """Leave-one-out retrieval scores by brute force from a full distance matrix `d` (equal
    distances in index order); P@1 and MAP@R skip queries alone in their class."""
    p1, ap, knn = [], [], []
    for q in range(len(y)):
        order = [i for i in np.argsort(d[q], kind="stable") if i != q]
        rel = y[order] == y[q]
        top = list(y[order[:k]])
        counts = {c: top.count(c) for c in top}
        knn.append(next(c for c in top if counts[c] == max(counts.values())) == y[q])
        r = int(rel.sum())
        if r:
            p1.append(rel[0])
            hits = np.cumsum(rel[:r])
            ap.append(sum(hits[i] / (i + 1) for i in range(r) if rel[i]) / r)
    return {"precision_at_1": float(np.mean(p1)), "map_at_r": float(np.mean(ap)), "knn_acc": float(np.mean(knn))}



def angle_distances(x: np.ndarray, zero_to_zero: float, zero_to_unit: float) -> np.ndarray:
    """1 - cosine in float64 between non-zero rows; the given values where a zero row is involved."""
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    d = 1.0 - unit @ unit.T
    zero = norms == 0
    d[zero[:, None] | zero[None, :]] = zero_to_unit
    d[zero[:, None] & zero[None, :]] = zero_to_zero
    return d



def blobs(
    n: int = 400, dim: int = 16, n_classes: int = 7, seed: int = 0, duplicates: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes (every metric strictly between 0 and 1), off the origin, with one class of a
    single item and (`duplicates`) a few equal points of different classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes - 1, n)
    y[0] = n_classes - 1  # alone in its class
    x = rng.normal(size=(n_classes, dim))[y] * 0.5 + rng.normal(size=(n, dim)) + 3.0
    if duplicates:
        x[10:14] = x[20]
    return x.astype(np.float32), y



def budget(rows: int, labels: np.ndarray, knn_k: int) -> int:
    """The `block_bytes` that makes the search take blocks of `rows` queries of these labels: per
    query N float32 distances three times over and the K neighbours it keeps (`metrics.block_rows`)."""
    n = len(labels)
    k = min(max(int(np.unique(labels, return_counts=True)[1].max()) - 1, knn_k), n - 1)
    return rows * (3 * 4 * n + metrics.NEIGHBOUR_BYTES * (k + 1))
