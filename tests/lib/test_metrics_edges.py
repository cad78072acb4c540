"""Edges of the retrieval metrics that mutation testing found unchecked: the input check (with its
own message) and translation invariance far from the origin (centring per dimension)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.metrics import retrieval_scores

CHECK = "need N x D embeddings and N labels with N >= 2"


def test_two_items_are_enough():
    scores = retrieval_scores(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([3, 3]), knn_k=5)
    assert scores == {"precision_at_1": 1.0, "map_at_r": 1.0, "knn_acc": 1.0}


@pytest.mark.parametrize(
    ("embeddings", "labels"),
    [
        (np.zeros(4), np.zeros(4, dtype=int)),  # 1-D
        (np.zeros((4, 2)), np.zeros(3, dtype=int)),  # a label short
        (np.zeros((4, 2)), np.zeros((4, 1), dtype=int)),  # labels not 1-D
        (np.zeros((1, 2)), np.zeros(1, dtype=int)),  # one item: nothing to retrieve
    ],
    ids=["1-D embeddings", "a label short", "2-D labels", "one item"],
)
def test_bad_inputs_are_refused_by_its_own_check(embeddings, labels):
    with pytest.raises(ValueError, match=CHECK):
        retrieval_scores(embeddings, labels, knn_k=1)


def test_far_from_the_origin_along_one_axis_the_scores_are_the_same():
    # Euclidean retrieval does not change under translation. Embeddings 1e5 away along one axis lose
    # their differences in float32 unless each dimension is centred before the float32 distances.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 4)) + 0.5 * rng.normal(size=(3, 4))[labels]
    near = retrieval_scores(x, labels, knn_k=3)
    far = retrieval_scores(x + np.array([1e5, 0.0, 0.0, 0.0]), labels, knn_k=3)
    assert far == pytest.approx(near, abs=1e-12)
    assert 0.3 < near["precision_at_1"] < 1  # neither trivial nor perfect: a loss of precision shows
