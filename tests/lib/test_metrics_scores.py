"""Every score of the evaluate stage together (`evaluate_embeddings`): K-means accuracy with its
interval and its spread over initialisations, the L2-normalised view, the per-image results, the
defaults, and the caller's embeddings left as they were."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from stages.lib import metrics
from stages.lib.metrics import (
    clustering_scores,
    embedding_scores,
    evaluate_embeddings,
    l2_normalise,
)


def test_kmeans_init_std_is_over_single_initialisation_runs_from_kmeans_seed(monkeypatch):
    # Scripted K-means: the study's run (10 inits, seed 7) is perfect; the single-init runs with seeds
    # 7, 8, 9 score 1, 1/2, 3/4 -> population std sqrt(((1/4)^2 + (1/4)^2 + 0) / 3) = sqrt(1/24).
    # The L2-normalised view repeats the study's run only.
    labels = np.array([0, 0, 1, 1])
    scripted = {(10, 7): [0, 0, 1, 1], (1, 7): [1, 1, 0, 0], (1, 8): [0, 1, 0, 1], (1, 9): [0, 0, 0, 1]}
    calls = []

    def fake_kmeans(embeddings, n_clusters, *, n_init, seed, overwrite=False, device=None):
        calls.append((n_init, seed))
        return np.array(scripted[(n_init, seed)])

    monkeypatch.setattr(metrics, "kmeans_clusters", fake_kmeans)
    x = np.array([[0.0], [0.1], [5.0], [5.1]])
    s = embedding_scores(x, labels, n_init=10, seed=7, kmeans_repeats=3, knn_k=1)
    assert calls == [(10, 7), (1, 7), (1, 8), (1, 9), (10, 7)]
    assert s["kmeans_acc"] == 1.0 and s["kmeans_acc_ci95"] == [1.0, 1.0]
    assert s["kmeans_init_std"] == pytest.approx(np.sqrt(1 / 24))
    assert set(s) == {"kmeans_acc", "kmeans_acc_ci95", "nmi", "ari", "kmeans_init_std", "precision_at_1", "map_at_r",
                      "knn_acc", "l2"}
    assert set(s["l2"]) == {"kmeans_acc", "kmeans_acc_ci95", "nmi", "ari", "precision_at_1", "map_at_r", "knn_acc"}


def test_separated_blobs_score_perfectly_with_no_spread():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 20)
    x = rng.normal(size=(4, 16))[labels] * 50 + rng.normal(size=(80, 16))
    s = embedding_scores(x, labels, n_init=3, seed=0, kmeans_repeats=4, knn_k=5)
    perfect = {"kmeans_acc": 1.0, "nmi": 1.0, "ari": 1.0, "precision_at_1": 1.0, "map_at_r": 1.0, "knn_acc": 1.0}
    for view in (s, s["l2"]):
        assert view["kmeans_acc_ci95"] == [1.0, 1.0]
        assert {k: view[k] for k in perfect} == pytest.approx(perfect)
    assert s["kmeans_init_std"] == 0.0


def test_n_clusters_sets_k_whatever_the_labels_hold(monkeypatch):
    """Scored against labels that miss a class (evaluate.labels: study), K-means still finds as
    many clusters as the caller says: every K-means call gets that k."""
    ks = []
    real = metrics.kmeans_clusters

    def spy(embeddings, n_clusters, **kwargs):
        ks.append(n_clusters)
        return real(embeddings, n_clusters, **kwargs)

    monkeypatch.setattr(metrics, "kmeans_clusters", spy)
    x = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 4, axis=0) + np.arange(12)[:, None] * 0.01
    labels = np.array([0] * 8 + [1] * 4)  # two labels for three blobs
    _, per_image = evaluate_embeddings(x, labels, n_init=2, seed=0, kmeans_repeats=2, knn_k=1, n_clusters=3,
                                       device=torch.device("cpu"))
    assert ks == [3, 3, 3, 3] and len(set(per_image["cluster"])) == 3
    ks.clear()
    evaluate_embeddings(x, labels, n_init=2, seed=0, kmeans_repeats=2, knn_k=1, device=torch.device("cpu"))
    assert ks == [2, 2, 2, 2]


def test_one_repeat_has_zero_spread():
    rng = np.random.default_rng(1)
    s = embedding_scores(rng.normal(size=(30, 4)), np.arange(30) % 3, n_init=2, seed=0, kmeans_repeats=1, knn_k=3)
    assert s["kmeans_init_std"] == 0.0


def test_the_l2_view_scores_directions_not_lengths():
    # Two classes that differ only in direction, with lengths spread over three orders of magnitude:
    # K-means on the raw embeddings splits by length, on L2-normalised ones by direction.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    angles = np.where(labels == 0, 0.0, np.pi / 2) + rng.normal(scale=0.05, size=80)
    lengths = np.tile(np.r_[np.full(20, 1.0), np.full(20, 1000.0)], 2)
    x = np.c_[np.cos(angles), np.sin(angles)] * lengths[:, None]
    s = embedding_scores(x, labels, n_init=5, seed=0, kmeans_repeats=1, knn_k=3)
    assert s["l2"]["kmeans_acc"] == 1.0
    assert s["kmeans_acc"] < 0.8


def test_per_image_results_are_the_matched_clustering(monkeypatch):
    labels = np.array([3, 3, 3, 8, 8, 8])  # class ids need not be 0..k-1
    x = np.array([[0.0], [0.1], [0.2], [9.0], [9.1], [0.3]])
    scores, per_image = metrics.evaluate_embeddings(x, labels, n_init=3, seed=0, kmeans_repeats=1, knn_k=1,
                                                    bootstrap_resamples=1000)
    assert (per_image["predicted"] == np.array([3, 3, 3, 8, 8, 3])).all()
    assert (per_image["correct"] == np.array([1, 1, 1, 1, 1, 0], dtype=bool)).all()
    assert scores["kmeans_acc"] == pytest.approx(5 / 6)


def test_l2_normalise_scales_short_and_long_rows_to_unit_length():
    x = np.array([[0.3, 0.4], [3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float32)
    out = l2_normalise(x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-7, atol=0)


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


def test_an_unknown_distance_is_refused_with_its_own_message():
    with pytest.raises(ValueError, match=re.escape("distance must be one of ('euclidean', 'cosine'), got 'l1'")):
        evaluate_embeddings(np.zeros((4, 2)), np.array([0, 0, 1, 1]), n_init=1, seed=0, distance="l1")


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

