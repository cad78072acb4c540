"""K-means in torch (`stages.lib.kmeans`, what the evaluate stage runs on a GPU) against
scikit-learn's, run here on the CPU device: the same starting centres draw for draw, the same
clustering, the same handling of an empty cluster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.metrics import adjusted_rand_score

from benchmarks.bench_evaluate import blobs
from stages.lib import kmeans
from stages.lib.metrics import matched_accuracy

CPU = torch.device("cpu")


def test_kmeans_plusplus_chooses_scikit_learns_centres_draw_for_draw():
    # Two initialisations in a row from one random state, as KMeans(n_init=2) draws them.
    x = blobs(500, dim=16, n_classes=12, seed=3)[0].astype(np.float64)
    ours, theirs = np.random.RandomState(5), np.random.RandomState(5)
    for _ in range(2):
        chosen = kmeans.kmeans_plusplus(torch.from_numpy(x), 12, ours)
        _, expected = kmeans_plusplus(x, 12, random_state=theirs)
        assert chosen.tolist() == expected.tolist()
    assert ours.uniform() == theirs.uniform()  # the same number of draws taken


@pytest.mark.parametrize(("n_init", "seed"), [(3, 0), (1, 4)])
def test_the_torch_kmeans_clusters_as_scikit_learns(n_init, seed):
    # The benchmark's embeddings (Gaussian classes that K-means separates only in part), small.
    x, y = blobs(900, dim=128, n_classes=15, seed=1)
    ours = kmeans.kmeans_fit_predict(x, 15, n_init=n_init, seed=seed, device=CPU)
    theirs = KMeans(15, n_init=n_init, random_state=seed).fit_predict(x.astype(np.float64))
    assert ours.dtype == theirs.dtype == np.int32
    accuracy = matched_accuracy(y, theirs)
    assert 0.3 < accuracy < 0.95  # room for another clustering to score otherwise
    assert matched_accuracy(y, ours) == pytest.approx(accuracy, abs=0.005)
    assert adjusted_rand_score(theirs, ours) > 0.99


def test_the_best_of_several_initialisations_is_scikit_learns_choice():
    # Single initialisations that land differently; the best of 6 by inertia is the one scikit-learn keeps.
    x, y = blobs(400, dim=64, n_classes=10, seed=2)
    singles = {matched_accuracy(y, kmeans.kmeans_fit_predict(x, 10, n_init=1, seed=s, device=CPU)) for s in range(6)}
    assert len(singles) > 1
    ours = kmeans.kmeans_fit_predict(x, 10, n_init=6, seed=0, device=CPU)
    theirs = KMeans(10, n_init=6, random_state=0).fit_predict(x.astype(np.float64))
    assert adjusted_rand_score(theirs, ours) > 0.99


def test_an_empty_cluster_takes_the_point_farthest_from_its_centre():
    # Starting centres 0, 10 and 100 on a line of points near 0 and near 10: the third cluster gets no
    # point, and takes the one farthest from its own centre (9.0's neighbour 13.0 in cluster 10), as
    # scikit-learn's Lloyd does.
    x = np.array([0.0, 0.5, 1.0, 9.0, 10.0, 10.5, 13.0])[:, None]
    start = np.array([[0.0], [10.0], [100.0]])
    mean = x.mean(axis=0)
    labels, inertia = kmeans.lloyd(torch.from_numpy(x - mean), torch.from_numpy(start - mean), tol=0.0)
    theirs = KMeans(3, init=start, n_init=1).fit(x)
    assert labels.tolist() == theirs.labels_.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert inertia == pytest.approx(theirs.inertia_, rel=1e-12)


def test_fewer_points_than_clusters_are_refused():
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        kmeans.kmeans_fit_predict(np.zeros((2, 2)), 3, n_init=1, seed=0, device=CPU)
