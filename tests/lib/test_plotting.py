"""The pictures: what they show is checked on the figures' own data, not by eye."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.metrics import kmeans_clusters, matched_accuracy, matched_predictions
from stages.lib.plotting import (
    MATCH,
    MISMATCH,
    confusion_matrix_figure,
    marker_size,
    method_label,
    retrieval_grid,
    save_figure,
    scatter_by_class,
)
from stages.pictures import nearest_neighbours


def test_the_control_is_called_untrained_without_pretrained_weights():
    assert method_label("pretrained", pretrained=False) == "untrained"
    assert method_label("pretrained", pretrained=True) == "pretrained"
    assert method_label("triplet", pretrained=False) == "triplet"


def blobs(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    return rng.normal(0, 10, size=(n_classes, 2))[labels] + rng.normal(0, 1, size=(n, 2)), labels


def test_umap_scatter_names_each_class_where_it_lies_and_has_no_legend():
    points, labels = blobs(100, 5)
    points += np.repeat(np.arange(5)[:, None] * 100.0, 2, axis=1)[labels]  # five far-apart classes
    fig = scatter_by_class(points, labels, list("abcde"), "5 classes")
    ax = fig.axes[0]
    assert ax.get_legend() is None
    span = np.ptp(points, axis=0)
    for label, text in enumerate(sorted(ax.texts, key=lambda t: t.get_text())):
        median = np.median(points[labels == label], axis=0)
        assert np.all(np.abs(np.array(text.get_position()) - median) < 0.05 * span), text.get_text()


def test_crowded_class_names_do_not_hide_each_other_and_dots_are_sized_by_count(tmp_path):
    points, labels = blobs(111, 37)
    classes = [f"breed_{i}" for i in range(37)]
    fig = scatter_by_class(points, labels, classes, "37 classes")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(classes)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    overlaps = [
        (a.x1 - a.x0) * (a.y1 - a.y0) and max(0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0, min(a.y1, b.y1)
                                                                                          - max(a.y0, b.y0))
        / ((a.x1 - a.x0) * (a.y1 - a.y0))
        for i, a in enumerate(boxes) for b in boxes[i + 1:]
    ]
    assert max(overlaps) < 0.25, max(overlaps)  # at most a corner of one name under another
    assert marker_size(100) > 4 * marker_size(3000) >= 12  # large dots for a hundred points, small for thousands
    assert ax.collections[0].get_sizes()[0] == pytest.approx(marker_size(111))
    save_figure(fig, tmp_path / "a.png")
    save_figure(scatter_by_class(points, labels, classes, "37 classes"), tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # the placement is reproducible


def test_nearest_neighbours_are_the_nearest_other_images_in_order():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    queries = np.array([0, 7, 39])
    found = nearest_neighbours(x, queries, 5, "euclidean")
    for q, row in zip(queries, found, strict=True):
        distances = np.linalg.norm(x - x[q], axis=1)
        distances[q] = np.inf
        assert row.tolist() == np.argsort(distances, kind="stable")[:5].tolist()


def test_retrieval_frames_say_whether_the_class_matches():
    pixels = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    neighbours = np.zeros((2, 3, 8, 8, 3), dtype=np.uint8)
    fig = retrieval_grid(pixels, np.array([0, 1]), neighbours, np.array([[0, 1, 0], [1, 1, 0]]), ["a", "b"], "t")
    frames = [[ax.spines["top"].get_edgecolor() for ax in fig.axes[row * 4 + 1: row * 4 + 4]] for row in (0, 1)]
    green, red = (pytest.approx(np.array(c)) for c in (_rgba(MATCH), _rgba(MISMATCH)))
    assert frames == [[green, red, green], [green, green, red]]
    assert [ax.get_xlabel() for ax in fig.axes[:4]] == ["a", "a", "b", "a"]


def _rgba(colour: str) -> tuple:
    from matplotlib.colors import to_rgba

    return to_rgba(colour)


def test_confusion_matrix_is_the_hungarian_matching_of_k_means():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 15)
    x = rng.normal(0, 3, size=(4, 8))[labels] + rng.normal(size=(60, 8))
    clusters = kmeans_clusters(x, 4, n_init=2, seed=0)
    predicted = matched_predictions(labels, clusters)
    assert np.mean(predicted == labels) == pytest.approx(matched_accuracy(labels, clusters))
    fig = confusion_matrix_figure(labels, predicted, ["w", "x", "y", "z"], "t")
    shares = fig.axes[0].images[0].get_array()
    expected = pd.crosstab(labels, predicted).reindex(columns=range(4), fill_value=0).to_numpy() / 15
    assert np.allclose(shares, expected)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["w", "x", "y", "z"]


def test_confusion_matrix_shows_unmatched_images_in_their_own_column():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, -1, 1, 1, 2, -1])
    fig = confusion_matrix_figure(labels, predicted, ["a", "b", "c"], "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "unmatched"]
    assert ax.images[0].get_array()[:, 3].tolist() == [0.5, 0.0, 0.5]


def test_matched_predictions_leave_an_extra_cluster_unmatched():
    labels = np.array([0, 0, 1, 1, 1])
    clusters = np.array([5, 5, 7, 7, 9])  # three clusters, two classes: one cluster stays unmatched
    assert matched_predictions(labels, clusters).tolist() == [0, 0, 1, 1, -1]


def test_curves_mark_the_selected_epoch_skip_methods_that_do_not_train_and_keep_the_legend_off_them(tmp_path):
    from stages.lib.report_figures import curves
    from stages.lib.trainer import write_curve
    from stages.report import read_curves

    losses = ((1, 0.9), (2, 0.5), (3, 0.7))
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": v, "lr": 1e-3} for e, v in losses]
    write_curve(tmp_path / "d/triplet/seed0.csv", history, best_epoch=2)
    write_curve(tmp_path / "d/pretrained/seed0.csv", [])
    fig = curves("d", read_curves(tmp_path, "d", ["pretrained", "triplet"], [0]), pretrained=False)
    assert [ax.get_title() for ax in fig.axes] == ["d · triplet"]  # no empty panel for the untrained control
    stars = [line for line in fig.axes[0].lines if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [2] and list(stars[0].get_ydata()) == [0.5]
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1
