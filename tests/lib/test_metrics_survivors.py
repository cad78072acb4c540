"""What mutation testing left alive in metrics.py after issue 13 (docs/testing.md): each case
here changes a reported number when the code it guards breaks."""

from __future__ import annotations

import numpy as np

from stages.lib.metrics import clustering_scores, l2_normalise, matched_predictions


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
    assert clustering_scores(x, labels, n_init=1, seed=3) == runs[3]
    assert len({r["kmeans_acc"] for r in runs}) > 1
