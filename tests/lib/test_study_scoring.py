"""The study's scoring: every image gets the label of the first image of its batch of four."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.study_scoring import fewest_mislabelled, scoring_labels, sorted_list_counts, study_labels


def naive(labels, batch_size=4):
    """What the study's evaluation loop does: read the list in batches, label each embedding of a
    batch with the batch's first label."""
    out = []
    for start in range(0, len(labels), batch_size):
        batch = labels[start:start + batch_size]
        out += [batch[0]] * len(batch)
    return out


def test_a_hand_made_list():
    labels = ["a", "a", "a", "b", "b", "b", "b", "c", "c"]
    scored, wrong = study_labels(labels)
    assert scored.tolist() == ["a", "a", "a", "a", "b", "b", "b", "b", "c"]  # the b at 3 and the c at 7 mislabelled
    assert wrong == 2
    assert study_labels([1, 2, 3, 4, 5])[1] == 3  # 2, 3 and 4 get 1; 5 starts its own batch
    assert study_labels([0, 0, 0, 0, 1, 1, 1, 1])[1] == 0  # boundaries on batches: nothing wrong
    assert study_labels([1, 2, 3], batch_size=1) == (pytest.approx([1, 2, 3]), 0)


def test_the_same_labels_as_the_batch_loop():
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 5, 30, 222, 741):
        labels = np.sort(rng.integers(7, size=n))
        scored, wrong = study_labels(labels)
        assert scored.tolist() == naive(labels.tolist())
        assert wrong == sum(a != b for a, b in zip(naive(labels.tolist()), labels.tolist(), strict=True))


def test_the_study_s_sorted_lists():
    pets = sorted_list_counts([(f"c{i}", 6) for i in range(37)])  # 15-shot pets: 37 x 6
    assert sorted(pets["points"].values()) == [4] * 18 + [6] + [8] * 18 and pets["mislabelled"] == 36
    assert list(pets["points"].values())[:3] == [8, 4, 8] and pets["points"]["c36"] == 6
    fungi = sorted_list_counts([(h, 6) for h in ("H2", "H6", "H5", "H3", "H1")])  # 15-shot DeFungi
    assert fungi == {"points": {"H2": 8, "H6": 4, "H5": 8, "H3": 4, "H1": 6}, "mislabelled": 4}
    full = sorted_list_counts([(f"H{i}", 148) for i in range(1, 6)])  # full DeFungi: 148 = 37 x 4
    assert full == {"points": {f"H{i}": 148 for i in range(1, 6)}, "mislabelled": 0}


def test_the_fewest_mislabelled_behind_a_plot():
    truth = {f"H{i}": 148 for i in range(1, 6)}
    plot = {"H1": 144, "H2": 144, "H3": 144, "H4": 148, "H5": 160}
    assert fewest_mislabelled(plot, truth) == 12
    assert fewest_mislabelled(truth, truth) == 0
    assert fewest_mislabelled({"a": 8, "b": 4}, {"a": 6, "b": 6}) == 2
    with pytest.raises(ValueError, match="the plot has 11 points but the test set 12 images"):
        fewest_mislabelled({"a": 7, "b": 4}, {"a": 6, "b": 6})


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        study_labels([])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        study_labels([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="^need at least one test image$"):
        sorted_list_counts([("a", 0)])


def test_a_clustering_scored_both_ways():
    from stages.lib.study_scoring import study_accuracy

    labels = np.repeat([0, 1, 2, 3, 4], 6)  # 15-shot DeFungi's sorted list: 5 classes x 6
    perfect = labels.copy()  # a clustering that finds every class
    r = study_accuracy(labels, perfect)
    # The study's labels put images 6, 7 in class 0 and 18, 19 in class 2: a perfect clustering scores 26/30.
    assert r == {"kmeans_acc": 1.0, "kmeans_acc_study": pytest.approx(26 / 30), "mislabelled": 4}
    study_clusters = study_labels(labels)[0]  # a clustering that agrees with the study's labels
    assert study_accuracy(labels, study_clusters) == {"kmeans_acc": pytest.approx(26 / 30),
                                                      "kmeans_acc_study": 1.0, "mislabelled": 4}


def test_evaluate_labels_picks_the_true_labels_or_the_studys():
    labels = np.array([3, 3, 3, 1, 1, 1, 1, 2, 2])
    same, wrong = scoring_labels(labels, True)
    assert same.tolist() == labels.tolist() and wrong == 0
    scored, wrong = scoring_labels(labels, "study")
    assert scored.tolist() == naive(labels.tolist()) and wrong == 2
    for how in (False, "mine", 1):
        with pytest.raises(ValueError, match="evaluate.labels must be true or study"):
            scoring_labels(labels, how)


def test_a_plot_may_lack_a_class_or_show_one_the_test_set_lacks():
    """A class that starts no batch has no points; a plot may show a label the test set has none of.
    Every point beyond a class's true count is one mislabelled image."""
    assert fewest_mislabelled({"a": 8, "c": 4}, {"a": 6, "b": 6}) == 6  # 2 extra a, 4 c that are not c
    assert fewest_mislabelled({"a": 12}, {"a": 6, "b": 6}) == 6
    assert fewest_mislabelled({"x": 2, "a": 2}, {"a": 4}) == 2
    assert fewest_mislabelled({"a": 4}, {"a": 4, "b": 0}) == 0  # a class with no test image shows no point


def test_other_batch_sizes_reach_every_function():
    # Batches of three fall on the class boundary: nothing mislabelled (batches of four: one).
    assert sorted_list_counts([("a", 3), ("b", 3)], batch_size=3) == {"points": {"a": 3, "b": 3}, "mislabelled": 0}
    assert sorted_list_counts([("a", 3), ("b", 3)])["mislabelled"] == 1
    from stages.lib.study_scoring import study_accuracy

    labels = np.array([0, 0, 0, 1, 1, 1])
    assert study_accuracy(labels, labels, batch_size=3) == {"kmeans_acc": 1.0, "kmeans_acc_study": 1.0,
                                                             "mislabelled": 0}
    assert study_accuracy(labels, labels)["mislabelled"] == 1
