"""K-means accuracy: Hungarian matching of clusters to classes, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        matched_accuracy(np.array([0, 1]), np.array([0]))


def test_separable_blobs_cluster_perfectly_and_noise_does_not():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 20
    labels = np.repeat(np.arange(4), 25)
    blobs = centres[labels] + rng.normal(size=(100, 16))
    scores = clustering_scores(blobs, labels, n_init=3, seed=0)
    assert scores == {"kmeans_acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    noise = clustering_scores(rng.normal(size=(100, 16)), labels, n_init=3, seed=0)
    assert noise["kmeans_acc"] < 0.6 and noise["ari"] < 0.2
