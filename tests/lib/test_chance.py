"""The chance level of K-means accuracy: the vectorised permutations against a naive loop of
`metrics.matched_accuracy` over the same permutations, and what a chance level must be."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib import chance
from stages.lib.chance import chance_level, permuted_accuracies
from stages.lib.metrics import matched_accuracy


def naive(labels, clusters, permutations, seed):
    """The definition: permute the labels, match by the Hungarian method (metrics.py), repeat."""
    rng = np.random.default_rng(seed)
    return np.array([matched_accuracy(rng.permutation(labels), clusters) for _ in range(permutations)])


@pytest.mark.parametrize("classes, per_class, clusters_k", [(5, 6, 5), (37, 6, 37), (3, 20, 4), (4, 9, 2)])
def test_the_same_accuracies_as_a_naive_loop(classes, per_class, clusters_k):
    rng = np.random.default_rng(classes)
    labels = np.repeat(np.arange(classes) * 7 + 3, per_class)  # class ids need not be 0..C-1
    clusters = rng.integers(clusters_k, size=len(labels)) * 10
    fast = permuted_accuracies(labels, clusters, permutations=60, seed=5)
    assert fast == pytest.approx(naive(labels, clusters, 60, 5), abs=1e-12)


def test_blocks_of_permutations_change_nothing(monkeypatch):
    rng = np.random.default_rng(0)
    labels, clusters = rng.integers(6, size=500), rng.integers(6, size=500)
    whole = permuted_accuracies(labels, clusters, permutations=50, seed=1)
    monkeypatch.setattr(chance, "CHUNK", 1200)  # two permutations per block, the last one alone
    assert np.array_equal(permuted_accuracies(labels, clusters, permutations=50, seed=1), whole)


def test_the_chance_level_of_a_small_test_set_is_far_above_one_in_k():
    labels = np.repeat(np.arange(5), 6)  # 15-shot DeFungi: 5 classes x 6 test images
    clusters = np.repeat(np.arange(5), 6)  # a perfect clustering: 5 clusters of 6
    level = chance_level(labels, clusters, permutations=400, seed=0)
    acc = naive(labels, clusters, 400, 0)
    assert level == {"mean": pytest.approx(acc.mean()), "p95": pytest.approx(np.quantile(acc, 0.95)),
                     "permutations": 400, "seed": 0}
    assert 0.33 < level["mean"] < 0.42 and level["p95"] > level["mean"]  # uniform guessing: 0.20
    assert matched_accuracy(labels, clusters) == 1.0 > level["p95"]


def test_one_cluster_or_one_class_is_its_largest_share_whatever_the_permutation():
    labels = np.r_[np.zeros(7), np.ones(3)]
    out = permuted_accuracies(labels, np.zeros(10), permutations=20, seed=0)
    assert np.all(out == 0.7)  # the one cluster matches the larger class


def test_the_chance_level_is_seeded_and_refuses_too_few_permutations():
    rng = np.random.default_rng(2)
    labels, clusters = rng.integers(4, size=80), rng.integers(4, size=80)
    assert chance_level(labels, clusters, seed=3) == chance_level(labels, clusters, seed=3)
    assert chance_level(labels, clusters, seed=3) != chance_level(labels, clusters, seed=4)
    assert chance_level(labels, clusters)["permutations"] == 200
    with pytest.raises(ValueError, match="at least 200 permutations, got 199"):
        chance_level(labels, clusters, permutations=199)
    with pytest.raises(ValueError, match="equal-length 1-D"):
        permuted_accuracies(labels, clusters[:-1])
    with pytest.raises(ValueError, match="permutations must be >= 1"):
        permuted_accuracies(labels, clusters, permutations=0)


def test_a_test_set_of_one_or_two_images_and_a_single_permutation():
    """The smallest inputs: two images in two clusters, where a permutation that swaps them leaves
    a cell of the last table empty, each permutation count from 1, against the naive loop; one image
    is always matched."""
    labels, clusters = np.array([0, 1]), np.array([0, 1])
    for permutations in range(1, 9):
        assert permuted_accuracies(labels, clusters, permutations=permutations, seed=permutations) == \
            pytest.approx(naive(labels, clusters, permutations, permutations))
    assert permuted_accuracies(np.array([4]), np.array([9]), permutations=3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="equal-length 1-D"):
        permuted_accuracies(np.array([]), np.array([]))


def test_the_default_seed_is_0_and_the_seed_given_is_the_one_used():
    rng = np.random.default_rng(6)
    labels, clusters = rng.integers(5, size=40), rng.integers(5, size=40)
    assert np.array_equal(permuted_accuracies(labels, clusters, permutations=30),
                          naive(labels, clusters, 30, 0))
    assert chance_level(labels, clusters) == chance_level(labels, clusters, seed=0)
    assert chance_level(labels, clusters, seed=7)["mean"] == pytest.approx(naive(labels, clusters, 200, 7).mean())
