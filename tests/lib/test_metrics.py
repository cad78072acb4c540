"""K-means accuracy: Hungarian matching of clusters to classes, checked by hand and against a brute
force over every one-to-one matching."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.lib.metrics import clustering_scores, matched_accuracy


def test_permuted_cluster_ids_score_perfectly():
    labels = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([2, 2, 0, 0, 1, 1])  # same partition, other names
    assert matched_accuracy(labels, clusters) == 1.0


def test_hand_checked_case():
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
def test_bad_shapes_are_refused_by_its_own_check(labels, clusters):
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
