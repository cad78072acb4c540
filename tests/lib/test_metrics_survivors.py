"""What mutation testing left alive in metrics.py (docs/testing.md), after issue 13 and again after
issue 11's blocked search: each case here changes a reported number when the code it guards breaks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from stages.lib import metrics
from stages.lib.metrics import (
    RANKINGS,
    clustering_scores,
    embedding_scores,
    evaluate_embeddings,
    l2_normalise,
    matched_predictions,
    retrieval_by_distance,
    retrieval_scores,
)


def test_l2_normalise_scales_short_and_long_rows_to_unit_length():
    x = np.array([[0.3, 0.4], [3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float32)
    out = l2_normalise(x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-7, atol=0)


def test_an_unmatched_cluster_predicts_minus_one():
    labels = np.array([0, 0, 1, 1, 1])
    clusters = np.array([5, 5, 7, 7, 9])  # three clusters, two classes: cluster 9 is matched to none
    np.testing.assert_array_equal(matched_predictions(labels, clusters), [0, 0, 1, 1, -1])


def test_the_kmeans_seed_reaches_the_clustering():
    """Overlapping blobs, one initialisation: K-means lands differently from different starts, and
    the same seed gives the same scores every time."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 1.5, size=(40, 2)) for c in ((0, 0), (2, 0), (0, 2), (2, 2))])
    labels = np.repeat(np.arange(4), 40)
    runs = [clustering_scores(x, labels, n_init=1, seed=s) for s in range(8)]
    assert [clustering_scores(x, labels, n_init=1, seed=s) for s in range(8)] == runs  # each seed, again
    assert len({r["kmeans_acc"] for r in runs}) > 1


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


@pytest.mark.parametrize("lengths", ["alike", "spread"])
def test_the_angle_rankings_with_zero_rows_equal_their_definitions(lengths):
    # cosine: a zero row is at cosine 0 from every row (1 - cosine = 1), itself a zero row included;
    # euclidean_l2: half the squared distance of L2-normalised rows, a zero row staying zero: 1/2 from a
    # unit vector, 0 from another zero row. Lengths alike, or spread so that rows far shorter than the
    # mean vector take the normalised copy. The rankings are searched in one pass, angles first.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 40)
    x = rng.normal(size=(4, 3))[y] + rng.normal(size=(40, 3)) * 0.8 + 1.0
    if lengths == "spread":
        x *= np.exp(rng.uniform(-5, 2, size=(40, 1)))
    x[[3, 17, 30]] = 0.0
    searched = retrieval_by_distance(x, y, knn_k=4, distances=("cosine", "euclidean_l2", "euclidean"))
    cosine, l2 = ranked(angle_distances(x, 1.0, 1.0), y, 4), ranked(angle_distances(x, 0.0, 0.5), y, 4)
    assert cosine != l2  # the zero rows tell the two apart
    assert searched["cosine"] == pytest.approx(cosine, abs=1e-12)
    assert searched["euclidean_l2"] == pytest.approx(l2, abs=1e-12)
    assert searched["euclidean"] == retrieval_scores(x, y, knn_k=4)
    assert retrieval_scores(x, y, knn_k=4, distance="cosine") == searched["cosine"]


def test_with_no_class_of_two_precision_and_map_at_r_are_undefined():
    s = retrieval_scores(np.arange(5.0)[:, None], np.arange(5), knn_k=3)
    assert np.isnan(s["precision_at_1"]) and np.isnan(s["map_at_r"]) and s["knn_acc"] == 0.0


@pytest.mark.parametrize(("distances", "named"), [(("euclidean", "manhattan"), "'manhattan'"), ((), "'none'")])
def test_the_search_refuses_an_unknown_ranking_or_none(distances, named):
    message = f"distance must be one of {RANKINGS}, got {named}"
    with pytest.raises(ValueError, match=re.escape(message)):
        retrieval_by_distance(np.zeros((3, 2)), np.zeros(3, dtype=int), knn_k=1, distances=distances)


def test_the_callers_embeddings_are_left_as_they_were():
    # K-means centres its float64 copy in place and adds the mean back: on the caller's own array that
    # would leave it changed in the last bits (values of many magnitudes: x - mean + mean is not x).
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(60, 5)) + rng.normal(size=(3, 5))[labels]) * np.exp(rng.uniform(-3, 3, size=(60, 1))) + 0.3
    before = x.copy()
    clustering_scores(x, labels, n_init=2, seed=0)
    evaluate_embeddings(x, labels, n_init=2, seed=0, kmeans_repeats=2, knn_k=3, bootstrap_resamples=10)
    assert x.tobytes() == before.tobytes()


def test_the_device_given_is_the_one_searched_on(monkeypatch):
    # The default device comes from `compute_device`; a device given must be used instead of asking.
    def unwanted():
        raise AssertionError("compute_device asked although a device was given")

    monkeypatch.setattr(metrics, "compute_device", unwanted)
    x, y = np.array([[0.0, 0], [0, 1], [0, 2], [10, 0], [10, 1], [10, 2]]), np.array([0, 0, 0, 1, 1, 1])
    cpu = torch.device("cpu")
    assert retrieval_scores(x, y, knn_k=1, device=cpu) == {"precision_at_1": 1.0, "map_at_r": 1.0, "knn_acc": 1.0}
    scores, _ = evaluate_embeddings(x, y, n_init=1, seed=0, knn_k=1, bootstrap_resamples=10, device=cpu)
    assert scores["precision_at_1"] == 1.0


def test_an_unknown_distance_is_refused_with_its_own_message():
    with pytest.raises(ValueError, match=re.escape("distance must be one of ('euclidean', 'cosine'), got 'l1'")):
        evaluate_embeddings(np.zeros((4, 2)), np.array([0, 0, 1, 1]), n_init=1, seed=0, distance="l1")


@pytest.mark.parametrize("last", [42, 41], ids=["ties across the k-th place, k = N - 2", "ties inside the first k"])
def test_many_equal_distances_not_the_nearest_come_in_index_order(last):
    # One query (item 0) of 43 items, its k = 41 nearest asked for: item 1 at distance 1, items 2 to
    # `last` at 2 (41 or 40 of them), the rest at 3. torch.topk and an unstable sort return 20 or more
    # equal values in no particular order.
    row = torch.full((1, 43), 3.0)
    row[0, 1], row[0, 2 : last + 1] = 1.0, 2.0
    order = metrics._nearest(row, 0, 41)
    assert order[0].tolist() == list(range(1, 42))


def test_precision_and_map_at_r_do_not_depend_on_the_knn_hits():
    # The hand-worked line of test_metrics_retrieval: with k = 5 every k-NN vote is wrong (knn_acc 0),
    # while precision@1 and MAP@R stay 3/6 and 7/24.
    line, labels = np.array([0.0, 1.0, 3.0, 4.2, 6.5, 9.5])[:, None], np.array([0, 0, 1, 0, 1, 1])
    assert retrieval_scores(line, labels, knn_k=5) == pytest.approx(
        {"precision_at_1": 3 / 6, "map_at_r": 7 / 24, "knn_acc": 0.0})


def test_the_documented_defaults_and_a_search_block_left_as_it_was():
    # evaluate_embeddings' defaults: one K-means repeat (no spread), k = 5 (the bootstrap's defaults
    # move the interval too little on small data to be seen here).
    x, y = np.random.default_rng(2).normal(size=(101, 3)), np.arange(101) % 3
    explicit = dict(kmeans_repeats=1, knn_k=5)
    assert embedding_scores(x, y, n_init=1, seed=0) == embedding_scores(x, y, n_init=1, seed=0, **explicit)
    items = metrics._Items(x, torch.device("cpu"))
    products = items.products(0, 24)
    before = products.clone()
    items.distances("euclidean", products, 0, 24)  # no `out`: the block stays as it was
    assert torch.equal(products, before)


def test_kmeans_clusters_float64_whatever_the_embeddings_dtype(monkeypatch):
    # The embeddings arrive as float32; K-means runs on a float64 copy (float32 K-means can end in
    # other clusters, moving the reported accuracy), on each path: a copy, the caller's own array
    # given up (`overwrite`), and both views of `evaluate_embeddings`.
    seen = []

    class Watched(metrics.KMeans):
        def fit(self, X, y=None, sample_weight=None):
            seen.append(X.dtype)
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(metrics, "KMeans", Watched)
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 10)
    x = (rng.normal(size=(30, 4)) + 4 * rng.normal(size=(3, 4))[labels]).astype(np.float32)
    copy = metrics.kmeans_clusters(x, 3, n_init=1, seed=0)
    given = metrics.kmeans_clusters(x.copy(), 3, n_init=1, seed=0, overwrite=True)
    evaluate_embeddings(x, labels, n_init=1, seed=0, kmeans_repeats=2, knn_k=3, bootstrap_resamples=10)
    assert seen == [np.dtype(np.float64)] * len(seen) and len(seen) == 2 + 2 + 2  # both views, two single starts
    np.testing.assert_array_equal(copy, given)


@pytest.mark.parametrize("lengths", ["alike", "spread"])
def test_rows_beyond_the_first_chunks_are_searched_too(lengths):
    # The embeddings are centred (and, for rows far shorter than the mean, normalised) in chunks of
    # 2**22 / D rows: with D = 2**19 that is 8 rows, so 20 rows take three chunks and every one of
    # them must reach the search (a loop over too few chunks leaves rows unwritten). The data ranks
    # the same in float32 as in float64: every row's nearest others are at least 10 times their
    # float32 error apart, and its cosines 8 times (an offset of 0.5 made every row almost parallel
    # to it: cosines 1e-7 apart, ranked by the BLAS's rounding).
    rng = np.random.default_rng(5)
    y = np.arange(20) % 4
    x = rng.normal(size=(4, 6))[y] + 0.3 * rng.normal(size=(20, 6))
    x = x @ rng.normal(size=(6, 2**19)) / 2**9.5 + 0.003  # an offset as long as the rest: a mean to centre
    if lengths == "spread":
        x *= np.exp(rng.uniform(-5, 1, size=(20, 1)))
    assert (metrics._Items(x, torch.device("cpu")).unit is not None) == (lengths == "spread")
    searched = retrieval_by_distance(x, y, knn_k=3, distances=("euclidean", "cosine", "euclidean_l2"))
    gram = x @ x.T
    squared = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram
    assert searched["euclidean"] == pytest.approx(ranked(squared, y, 3), abs=1e-12)
    assert searched["cosine"] == pytest.approx(ranked(angle_distances(x, 1.0, 1.0), y, 3), abs=1e-12)
    assert searched["euclidean_l2"] == searched["cosine"]  # no zero rows: the same order


def separated(lengths: str, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Float32 blobs in 6 overlapping classes, off the origin; `spread`: every 7th row 100 times
    shorter (the angles then come from the normalised copy, `_Items.unit`). Chosen so that every
    product ranks them alike: in every row, consecutive squared distances are at least 94 (alike)
    and 6.9 (spread) times the row's float32 error apart, and consecutive cosines 2.4e-6 apart
    (float32 cosines of 16 dimensions are off by about 2e-7)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 6
    x = rng.normal(size=(6, 16))[y] + rng.normal(size=(n, 16)) + 2.0
    if lengths == "spread":
        x[::7] *= 0.01
    return x.astype(np.float32), y


@pytest.mark.parametrize("lengths", ["alike", "spread"])
@pytest.mark.parametrize("distances", [("euclidean",), ("euclidean", "euclidean_l2"), RANKINGS])
def test_every_block_is_written_into_the_buffers_allocated_once(monkeypatch, lengths, distances):
    # The search allocates its rows x N blocks once, one for the products and one more when it
    # ranks more than one way, and every block's product and distances are written into them:
    # a new block per step is fresh memory from the system each time (page faults as costly as
    # the distances). Mutants that drop an `out=` still give the right numbers, so this checks
    # where each block lands.
    x, y = separated(lengths)
    assert (metrics._Items(x, torch.device("cpu")).unit is not None) == (lengths == "spread")
    n, rows = len(x), 6
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 12 * n * rows)  # 8 blocks
    allocated, written = [], []
    empty, matmul, distances_of = torch.empty, metrics._matmul, metrics._Items.distances

    def counting_empty(*shape, **kwargs):
        out = empty(*shape, **kwargs)
        if tuple(out.shape) == (rows, n):
            allocated.append(out.data_ptr())
        return out

    def products_into(queries, items, out=None):
        assert out is not None  # never a block of its own
        return matmul(queries, items, out)

    def distances_into(self, *args, **kwargs):
        out = distances_of(self, *args, **kwargs)
        written.append(out.data_ptr())
        return out

    monkeypatch.setattr(torch, "empty", counting_empty)
    monkeypatch.setattr(metrics, "_matmul", products_into)
    monkeypatch.setattr(metrics._Items, "distances", distances_into)
    scores = retrieval_by_distance(x, y, knn_k=5, distances=distances)
    assert len(allocated) == min(2, len(distances))
    assert len(written) == 8 * len(distances) and set(written) == set(allocated)
    monkeypatch.undo()  # one block: the same numbers
    whole = retrieval_by_distance(x, y, knn_k=5, distances=distances)
    assert all(scores[d] == pytest.approx(whole[d], abs=1e-12) for d in distances)


@pytest.mark.parametrize("lengths", ["alike", "spread"])
def test_the_cpu_product_is_numpys_and_torchs_the_gpus_gives_the_same_numbers(monkeypatch, lengths):
    # On the CPU the block product goes through numpy's BLAS (faster here than torch's); on a GPU
    # through torch's `mm`, which `NUMPY_PRODUCT_ON_CPU = False` runs on the CPU: the same
    # numbers as numpy's product and as the brute-force ranking of the whole matrix.
    x, y = separated(lengths)
    calls = {"numpy": 0, "torch": 0}
    np_matmul, torch_mm = np.matmul, torch.mm

    def numpy_product(*args, **kwargs):
        calls["numpy"] += 1
        return np_matmul(*args, **kwargs)

    def torch_product(*args, **kwargs):
        calls["torch"] += 1
        return torch_mm(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", numpy_product)
    monkeypatch.setattr(torch, "mm", torch_product)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 12 * len(x) * 6)  # 8 blocks
    rankings = ("euclidean", "cosine", "euclidean_l2")
    by_numpy = retrieval_by_distance(x, y, knn_k=5, distances=rankings)
    assert calls == {"numpy": 8 * (1 + 2 * (lengths == "spread")), "torch": 0}  # the angles: normalised copy
    monkeypatch.setattr(metrics, "NUMPY_PRODUCT_ON_CPU", False)
    calls.update(numpy=0)
    by_torch = retrieval_by_distance(x, y, knn_k=5, distances=rankings)
    assert calls == {"numpy": 0, "torch": 8 * (1 + 2 * (lengths == "spread"))}
    assert all(by_torch[d] == pytest.approx(by_numpy[d], abs=1e-12) for d in rankings)
    x = x.astype(np.float64)
    gram = x @ x.T
    squared = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram
    assert by_torch["euclidean"] == pytest.approx(ranked(squared, y, 5), abs=1e-12)
    assert by_torch["cosine"] == pytest.approx(ranked(angle_distances(x, 1.0, 1.0), y, 5), abs=1e-12)
    assert 0.4 < by_torch["euclidean"]["map_at_r"] < 0.9  # not a ranking that anything gets right
