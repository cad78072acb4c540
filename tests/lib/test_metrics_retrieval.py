"""Retrieval metrics (precision@1, MAP@R, k-NN accuracy): their values on cases worked by hand,
against a naive loop and against pytorch-metric-learning, under each ranking (cosine, and the
L2-normalised view with its zero rows), and the inputs they refuse."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from stages.lib import metrics
from stages.lib.metrics import (
    RANKINGS,
    knn_vote,
    retrieval_by_distance,
    retrieval_scores,
)
from tests.lib.metrics_cases import angle_distances, blobs, budget, naive, ranked

# Six points on a line (as 1-D embeddings), classes A = 0 and B = 1:
#   p0=0 A, p1=1 A, p2=3 B, p3=4.2 A, p4=6.5 B, p5=9.5 B
# Each query's other points, nearest first (R = 2 other items of its class for every query):
#   q0: A B A B B   P@1 1   AP@R (1/2)(1 + 0)        = 1/2
#   q1: A B A B B   P@1 1   1/2
#   q2: A A A B B   P@1 0   0          (q2 is B)
#   q3: B B A A B   P@1 0   0
#   q4: A B B A A   P@1 0   (1/2)(0 + 1/2 * 1)       = 1/4   (q4 is B)
#   q5: B A B A A   P@1 1   1/2
# precision_at_1 = 3/6, map_at_r = (1/2 + 1/2 + 0 + 0 + 1/4 + 1/2) / 6 = 7/24
LINE = np.array([0.0, 1.0, 3.0, 4.2, 6.5, 9.5])[:, None]


LINE_LABELS = np.array([0, 0, 1, 0, 1, 1])


CHECK = "need N x D embeddings and N labels with N >= 2"


def test_precision_at_1_and_map_at_r_are_those_worked_by_hand():
    s = retrieval_scores(LINE, LINE_LABELS, knn_k=1)
    assert s["precision_at_1"] == pytest.approx(3 / 6)
    assert s["map_at_r"] == pytest.approx(7 / 24)


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, 3 / 6),  # the nearest other point: P@1
        # k=2: q0, q1 tie A-B -> nearest A (right); q4 ties A-B -> nearest A (wrong); q5 B (right);
        # q2 A A, q3 B B (wrong). A tie broken towards the smaller label instead would give 2/6.
        (2, 3 / 6),
        (3, 4 / 6),  # q0 A B A, q1 A B A, q4 A B B, q5 B A B right; q2 A A A, q3 B B A wrong
        (4, 3 / 6),  # 2-2 ties: q0, q1 -> A (right), q3 -> B, q4 -> A (wrong), q5 B A B A -> B (right)
        (5, 0.0),  # every other point: the other class always has 3 of the 5
        (50, 0.0),  # k is capped at N - 1 = 5
    ],
)
def test_knn_accuracy_is_that_worked_by_hand(k, expected):
    assert retrieval_scores(LINE, LINE_LABELS, knn_k=k)["knn_acc"] == pytest.approx(expected)


def test_precision_and_map_at_r_do_not_depend_on_the_knn_hits():
    # The hand-worked line above: with k = 5 every k-NN vote is wrong (knn_acc 0),
    # while precision@1 and MAP@R stay 3/6 and 7/24.
    line, labels = np.array([0.0, 1.0, 3.0, 4.2, 6.5, 9.5])[:, None], np.array([0, 0, 1, 0, 1, 1])
    assert retrieval_scores(line, labels, knn_k=5) == pytest.approx(
        {"precision_at_1": 3 / 6, "map_at_r": 7 / 24, "knn_acc": 0.0})


def test_knn_vote_is_the_majority_and_a_tie_goes_to_the_nearest_class():
    rows = np.array([[1, 2, 2, 0], [2, 1, 1, 2], [0, 1, 1, 0], [5, 3, 3, 5]])
    assert knn_vote(rows).tolist() == [2, 2, 0, 5]
    assert knn_vote(rows[:, :1]).tolist() == [1, 2, 0, 5]


def test_cosine_distance_ignores_length():
    # p0=(1,0) A, p1=(10,0) A, p2=(0.8,0.9) B, p3=(0,1) B.
    # Euclidean: q0's nearest is p2 (0.92, B; p1 is 9 away): wrong; q1 -> p0, q2 -> p3, q3 -> p2 right: 3/4.
    # Cosine: q0 and q1 point the same way: every nearest is right. R = 1, so MAP@R = P@1.
    x = np.array([[1.0, 0.0], [10.0, 0.0], [0.8, 0.9], [0.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    euclidean = retrieval_scores(x, y, knn_k=1)
    cosine = retrieval_scores(x, y, knn_k=1, distance="cosine")
    assert euclidean == pytest.approx({"precision_at_1": 0.75, "map_at_r": 0.75, "knn_acc": 0.75})
    assert cosine == pytest.approx({"precision_at_1": 1.0, "map_at_r": 1.0, "knn_acc": 1.0})
    with pytest.raises(ValueError, match="distance"):
        retrieval_scores(x, y, knn_k=1, distance="manhattan")


def test_two_items_are_enough():
    scores = retrieval_scores(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([3, 3]), knn_k=5)
    assert scores == {"precision_at_1": 1.0, "map_at_r": 1.0, "knn_acc": 1.0}


@pytest.mark.filterwarnings("error")  # undefined, not 0 / 0 with numpy's warning
def test_with_no_class_of_two_precision_and_map_at_r_are_undefined():
    s = retrieval_scores(np.arange(5.0)[:, None], np.arange(5), knn_k=3)
    assert np.isnan(s["precision_at_1"]) and np.isnan(s["map_at_r"]) and s["knn_acc"] == 0.0


@pytest.mark.parametrize("k", [1, 4, 5])
def test_retrieval_matches_a_naive_loop(monkeypatch, k):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), [1, 6, 11, 17, 25])  # one lone image (class 0): left out of P@1 and MAP@R
    monkeypatch.setattr(metrics, "block_bytes", lambda device: budget(7, y, k))  # blocks of 7 of the 60 queries
    centres = rng.normal(size=(5, 8)) * 1.5
    x = centres[y] + rng.normal(size=(len(y), 8)) + 100.0  # far from the origin: centring keeps float32 accurate
    assert retrieval_scores(x, y, knn_k=k) == pytest.approx(naive(x, y, k), abs=1e-9)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_blocked_search_gives_pytorch_metric_learnings_numbers(monkeypatch, distance):
    # The reference: pytorch-metric-learning's AccuracyCalculator over the whole set at once, with an
    # exact k-NN (what this function computed before it worked in blocks).
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    x, y = blobs(duplicates=False)  # its calculator drops the first neighbour as the query, even if a duplicate
    centred = x - x.mean(axis=0) if distance == "euclidean" else x
    measure = LpDistance(p=2, power=1, normalize_embeddings=False) if distance == "euclidean" else CosineSimilarity()
    reference = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count",
                                   device=torch.device("cpu"), knn_func=CustomKNN(measure)).get_accuracy(centred, y)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: budget(9, y, 5))  # blocks of 9 queries
    ours = retrieval_scores(x, y, knn_k=5, distance=distance)
    assert 0.2 < ours["precision_at_1"] < 0.95 and 0.1 < ours["map_at_r"] < 0.9
    # Both rank float32 distances (computed in other orders): at most a near-tie apart.
    assert ours["precision_at_1"] == pytest.approx(reference["precision_at_1"], abs=1 / len(x))
    assert ours["map_at_r"] == pytest.approx(reference["mean_average_precision_at_r"], abs=1 / len(x))


@pytest.mark.parametrize("lengths", ["alike", "spread"])
def test_the_angle_rankings_with_zero_rows_equal_their_definitions(lengths):
    # cosine: a zero row is at cosine 0 from every row (1 - cosine = 1), itself a zero row included;
    # euclidean_l2: half the squared distance of L2-normalised rows, a zero row staying zero: 1/2 from a
    # unit vector, 0 from another zero row. Lengths alike, or spread so that rows far shorter than the
    # mean vector take the normalised copy. The rankings are searched in one pass, angles first.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 40)
    x = rng.normal(size=(4, 3))[y] + rng.normal(size=(40, 3)) * 0.8 + 1.0
    if lengths == "spread":
        x *= np.exp(rng.uniform(-5, 2, size=(40, 1)))
    x[[3, 17, 30]] = 0.0
    searched = retrieval_by_distance(x, y, knn_k=4, distances=("cosine", "euclidean_l2", "euclidean"))
    cosine, l2 = ranked(angle_distances(x, 1.0, 1.0), y, 4), ranked(angle_distances(x, 0.0, 0.5), y, 4)
    assert cosine != l2  # the zero rows tell the two apart
    assert searched["cosine"] == pytest.approx(cosine, abs=1e-12)
    assert searched["euclidean_l2"] == pytest.approx(l2, abs=1e-12)
    assert searched["euclidean"] == retrieval_scores(x, y, knn_k=4)
    assert retrieval_scores(x, y, knn_k=4, distance="cosine") == searched["cosine"]


def test_the_l2_view_is_searched_as_l2_normalised_embeddings_zero_rows_included(monkeypatch):
    # Lengths spread over four orders of magnitude (rows far shorter than the mean vector: the
    # angles then come from a normalised copy) and two zero rows: the shared search ranks as a
    # search of the normalised copy would.
    x, y = blobs(n=300, seed=6, duplicates=False)
    x = x * np.exp(np.random.default_rng(6).uniform(-6, 3, size=(len(x), 1))).astype(np.float32)
    x[[5, 50]] = 0.0
    shared = metrics.retrieval_by_distance(x, y, knn_k=5, distances=("euclidean", "euclidean_l2"))
    assert shared["euclidean"] == retrieval_scores(x, y, knn_k=5)
    copy = retrieval_scores(metrics.l2_normalise(x), y, knn_k=5)
    assert shared["euclidean_l2"] == pytest.approx(copy, abs=1 / len(x))  # at most a near-tie apart
    scores, _ = metrics.evaluate_embeddings(x, y, n_init=1, seed=0, kmeans_repeats=1, knn_k=5,
                                            bootstrap_resamples=10)
    assert {k: scores["l2"][k] for k in copy} == shared["euclidean_l2"]
    assert {k: scores[k] for k in copy} == shared["euclidean"]
    cosine, _ = metrics.evaluate_embeddings(x, y, n_init=1, seed=0, kmeans_repeats=1, knn_k=5, distance="cosine",
                                            bootstrap_resamples=10)
    assert {k: cosine["l2"][k] for k in copy} == {k: cosine[k] for k in copy} == retrieval_scores(
        x, y, knn_k=5, distance="cosine")


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
def test_bad_inputs_are_refused_by_the_searchs_own_check(embeddings, labels):
    with pytest.raises(ValueError, match=CHECK):
        retrieval_scores(embeddings, labels, knn_k=1)


@pytest.mark.parametrize(("distances", "named"), [(("euclidean", "manhattan"), "'manhattan'"), ((), "'none'")])
def test_the_search_refuses_an_unknown_ranking_or_none(distances, named):
    message = f"distance must be one of {RANKINGS}, got {named}"
    with pytest.raises(ValueError, match=re.escape(message)):
        retrieval_by_distance(np.zeros((3, 2)), np.zeros(3, dtype=int), knn_k=1, distances=distances)

