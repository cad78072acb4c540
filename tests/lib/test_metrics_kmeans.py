"""K-means accuracy: clusters matched one-to-one to classes (Hungarian), checked by hand and
against a brute force over every matching; the clustering behind it (scikit-learn's K-means on a
float64 copy, its seed, unmatched clusters)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.lib import metrics
from stages.lib.metrics import (
    clustering_scores,
    evaluate_embeddings,
    matched_accuracy,
    matched_predictions,
)


def test_permuted_cluster_ids_score_perfectly():
    labels = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([2, 2, 0, 0, 1, 1])  # same partition, other names
    assert matched_accuracy(labels, clusters) == 1.0


def test_a_case_checked_by_hand_scores_seven_of_ten():
    # classes:  0 0 0 0 1 1 1 2 2 2
    # clusters: 1 1 1 0 0 0 2 2 2 1
    # contingency (rows classes, cols clusters): [[1,3,0],[2,0,1],[0,1,2]]
    # best one-to-one matching: class0->cluster1 (3), class1->cluster0 (2), class2->cluster2 (2) = 7 of 10
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    clusters = np.array([1, 1, 1, 0, 0, 0, 2, 2, 2, 1])
    assert matched_accuracy(labels, clusters) == pytest.approx(0.7)


def test_more_clusters_than_classes_leaves_some_unmatched():
    labels = np.array([0, 0, 1, 1])
    clusters = np.array([0, 1, 2, 2])
    assert matched_accuracy(labels, clusters) == pytest.approx(0.75)


def test_each_item_is_scored_against_its_own_label():
    # The study's bug gave a batch of 4 the label of its first image; we must not.
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    clusters = np.array([5, 5, 5, 7, 7, 7, 7, 7])
    assert matched_accuracy(labels, clusters) == 1.0


def test_two_classes_may_not_share_a_cluster():
    # contingency (rows classes, cols clusters): [[3, 0], [2, 1]]. One-to-one: class 0 -> cluster 0 (3),
    # class 1 -> cluster 1 (1) = 4 of 6. Letting each class take its best cluster would give 3 + 2 = 5.
    labels = np.array([0, 0, 0, 1, 1, 1])
    clusters = np.array([0, 0, 0, 0, 0, 1])
    assert matched_accuracy(labels, clusters) == pytest.approx(4 / 6)


def test_the_best_matching_is_not_the_greedy_one():
    # contingency [[3, 2], [2, 0]]: greedy takes the largest cell first (class 0 -> cluster 0, 3) and is
    # left with 0 for class 1: 3 of 7. Hungarian: class 0 -> cluster 1 (2), class 1 -> cluster 0 (2) = 4 of 7.
    # Per-class best cluster or per-cluster majority would both give 5 of 7.
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    clusters = np.array([0, 0, 0, 1, 1, 0, 0])
    assert matched_accuracy(labels, clusters) == pytest.approx(4 / 7)


def test_an_unmatched_cluster_predicts_minus_one():
    labels = np.array([0, 0, 1, 1, 1])
    clusters = np.array([5, 5, 7, 7, 9])  # three clusters, two classes: cluster 9 is matched to none
    np.testing.assert_array_equal(matched_predictions(labels, clusters), [0, 0, 1, 1, -1])


def brute_force_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """The best sum over every one-to-one matching of classes and clusters, by enumeration."""
    classes, label_ids = np.unique(labels, return_inverse=True)
    names, cluster_ids = np.unique(clusters, return_inverse=True)
    table = np.zeros((len(classes), len(names)), dtype=int)
    np.add.at(table, (label_ids, cluster_ids), 1)
    if len(classes) <= len(names):
        best = max(sum(table[i, c] for i, c in enumerate(p)) for p in itertools.permutations(range(len(names)),
                                                                                           len(classes)))
    else:
        best = max(sum(table[r, j] for j, r in enumerate(p)) for p in itertools.permutations(range(len(classes)),
                                                                                           len(names)))
    return best / len(labels)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5)), min_size=1, max_size=14))
def test_equals_the_best_one_to_one_matching_by_brute_force(pairs):
    labels = np.array([p[0] for p in pairs])
    clusters = np.array([p[1] for p in pairs]) * 3 + 1  # cluster ids need not be 0..k-1
    assert matched_accuracy(labels, clusters) == pytest.approx(brute_force_accuracy(labels, clusters))


@pytest.mark.parametrize(
    ("labels", "clusters"),
    [([0, 1], [0]), ([[0, 1]], [[0, 1]]), ([], [])],
    ids=["unequal lengths", "two-dimensional", "empty"],
)
def test_bad_shapes_are_refused_by_the_matchings_own_check(labels, clusters):
    with pytest.raises(ValueError, match="labels and clusters must be equal-length 1-D arrays"):
        matched_accuracy(np.array(labels), np.array(clusters))


def test_separable_blobs_cluster_perfectly_and_noise_does_not():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 20
    labels = np.repeat(np.arange(4), 25)
    blobs = centres[labels] + rng.normal(size=(100, 16))
    scores = clustering_scores(blobs, labels, n_init=3, seed=0)
    assert scores == {"kmeans_acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    noise = clustering_scores(rng.normal(size=(100, 16)), labels, n_init=3, seed=0)
    assert noise["kmeans_acc"] < 0.6 and noise["ari"] < 0.2


def test_the_kmeans_seed_reaches_the_clustering():
    """Overlapping blobs, one initialisation: K-means lands differently from different starts, and
    the same seed gives the same scores every time."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 1.5, size=(40, 2)) for c in ((0, 0), (2, 0), (0, 2), (2, 2))])
    labels = np.repeat(np.arange(4), 40)
    runs = [clustering_scores(x, labels, n_init=1, seed=s) for s in range(8)]
    assert [clustering_scores(x, labels, n_init=1, seed=s) for s in range(8)] == runs  # each seed, again
    assert len({r["kmeans_acc"] for r in runs}) > 1


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


def test_on_a_cuda_device_kmeans_is_the_torch_one_and_elsewhere_scikit_learns(monkeypatch):
    # On the CPU (and by default) scikit-learn's K-means, the bits of a direct call (the demo's
    # metrics do not move); on a CUDA device `stages.lib.kmeans`, here run on the CPU in its place.
    from sklearn.cluster import KMeans

    from stages.lib import kmeans

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 30)
    x = (rng.normal(size=(4, 6))[labels] + 1.5 * rng.normal(size=(120, 6))).astype(np.float32)
    direct = KMeans(4, n_init=2, random_state=5).fit_predict(x.astype(np.float64))
    for device in (None, torch.device("cpu")):
        assert metrics.kmeans_clusters(x, 4, n_init=2, seed=5, device=device).tobytes() == direct.tobytes()
    asked = []
    torch_kmeans = kmeans.kmeans_fit_predict

    def on_the_cpu(embeddings, n_clusters, *, n_init, seed, device):
        asked.append((n_clusters, n_init, seed, device))
        return torch_kmeans(embeddings, n_clusters, n_init=n_init, seed=seed, device=torch.device("cpu"))

    monkeypatch.setattr(kmeans, "kmeans_fit_predict", on_the_cpu)
    gpu = torch.device("cuda", 1)
    on_gpu = metrics.kmeans_clusters(x, 4, n_init=2, seed=5, device=gpu)
    assert asked == [(4, 2, 5, gpu)]
    assert matched_accuracy(labels, on_gpu) == pytest.approx(matched_accuracy(labels, direct), abs=0.005)
    # evaluate_embeddings clusters where it searches: every K-means run of both views on the GPU.
    asked.clear()
    search = metrics.retrieval_by_distance
    monkeypatch.setattr(metrics, "retrieval_by_distance", lambda *a, device, **kw: search(*a, device=None, **kw))
    evaluate_embeddings(x, labels, n_init=2, seed=5, kmeans_repeats=3, knn_k=3, bootstrap_resamples=10, device=gpu)
    assert asked == [(4, 2, 5, gpu), (4, 1, 5, gpu), (4, 1, 6, gpu), (4, 1, 7, gpu), (4, 2, 5, gpu)]
