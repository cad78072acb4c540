"""Retrieval metrics (precision@1, MAP@R, k-NN accuracy) and K-means accuracy's spread over seeds,
each checked on a case worked by hand, and the retrieval metrics against a naive loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stages import evaluate
from stages.lib import metrics
from stages.lib.arrays import save_npz
from stages.lib.metrics import embedding_scores, knn_vote, retrieval_scores

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


def test_precision_at_1_and_map_at_r_by_hand():
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
def test_knn_accuracy_by_hand(k, expected):
    assert retrieval_scores(LINE, LINE_LABELS, knn_k=k)["knn_acc"] == pytest.approx(expected)


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


def naive(x: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    """Leave-one-out retrieval by brute force; P@1 and MAP@R skip queries alone in their class."""
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    p1, ap, knn = [], [], []
    for q in range(len(x)):
        order = [i for i in np.argsort(d[q], kind="stable") if i != q]
        rel = y[order] == y[q]
        r = int(rel.sum())
        top = list(y[order[:k]])
        counts = {c: top.count(c) for c in top}
        best = max(counts.values())
        knn.append(next(c for c in top if counts[c] == best) == y[q])
        if r == 0:
            continue
        p1.append(rel[0])
        hits = np.cumsum(rel[:r])
        ap.append(sum(hits[i] / (i + 1) for i in range(r) if rel[i]) / r)
    return {"precision_at_1": float(np.mean(p1)), "map_at_r": float(np.mean(ap)), "knn_acc": float(np.mean(knn))}


@pytest.mark.parametrize("k", [1, 4, 5])
def test_retrieval_matches_a_naive_loop(monkeypatch, k):
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 3 * 4 * 60 * 7)  # blocks of 7 of the 60 queries
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), [1, 6, 11, 17, 25])  # one lone image (class 0): left out of P@1 and MAP@R
    centres = rng.normal(size=(5, 8)) * 1.5
    x = centres[y] + rng.normal(size=(len(y), 8)) + 100.0  # far from the origin: centring keeps float32 accurate
    assert retrieval_scores(x, y, knn_k=k) == pytest.approx(naive(x, y, k), abs=1e-9)


def test_kmeans_acc_std_is_over_single_initialisation_runs_from_kmeans_seed(monkeypatch):
    # Scripted K-means: the study's run (10 inits, seed 7) is perfect; the single-init runs with seeds
    # 7, 8, 9 score 1, 1/2, 3/4 -> population std sqrt(((1/4)^2 + (1/4)^2 + 0) / 3) = sqrt(1/24).
    labels = np.array([0, 0, 1, 1])
    scripted = {(10, 7): [0, 0, 1, 1], (1, 7): [1, 1, 0, 0], (1, 8): [0, 1, 0, 1], (1, 9): [0, 0, 0, 1]}
    calls = []

    def fake_kmeans(embeddings, n_clusters, *, n_init, seed):
        calls.append((n_init, seed))
        return np.array(scripted[(n_init, seed)])

    monkeypatch.setattr(metrics, "kmeans_clusters", fake_kmeans)
    x = np.array([[0.0], [0.1], [5.0], [5.1]])
    s = embedding_scores(x, labels, n_init=10, seed=7, kmeans_repeats=3, knn_k=1)
    assert calls == [(10, 7), (1, 7), (1, 8), (1, 9)]
    assert s["kmeans_acc"] == 1.0
    assert s["kmeans_acc_std"] == pytest.approx(np.sqrt(1 / 24))
    assert set(s) == {"kmeans_acc", "nmi", "ari", "kmeans_acc_std", "precision_at_1", "map_at_r", "knn_acc"}


def test_separated_blobs_score_perfectly_with_no_spread():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 20)
    x = rng.normal(size=(4, 16))[labels] * 50 + rng.normal(size=(80, 16))
    s = embedding_scores(x, labels, n_init=3, seed=0, kmeans_repeats=4, knn_k=5)
    assert s == pytest.approx({"kmeans_acc": 1.0, "nmi": 1.0, "ari": 1.0, "kmeans_acc_std": 0.0,
                               "precision_at_1": 1.0, "map_at_r": 1.0, "knn_acc": 1.0})


def test_one_repeat_has_zero_spread():
    rng = np.random.default_rng(1)
    s = embedding_scores(rng.normal(size=(30, 4)), np.arange(30) % 3, n_init=2, seed=0, kmeans_repeats=1, knn_k=3)
    assert s["kmeans_acc_std"] == 0.0


def test_the_evaluate_stage_writes_every_metric(tmp_path, params_file):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 5)
    save_npz(tmp_path / "emb.npz", embeddings=rng.normal(size=(15, 8)).astype(np.float32), labels=labels)
    evaluate.main(["--params", str(params_file), "--embeddings", str(tmp_path / "emb.npz"),
                   "--out", str(tmp_path / "m.json")])
    written = json.loads((tmp_path / "m.json").read_text())
    assert set(written) == {"kmeans_acc", "nmi", "ari", "kmeans_acc_std", "precision_at_1", "map_at_r",
                            "knn_acc", "n_test", "n_classes"}
    assert all(0.0 <= written[k] <= 1.0 for k in ("kmeans_acc", "kmeans_acc_std", "precision_at_1", "map_at_r",
                                                    "knn_acc"))


def blobs(
    n: int = 400, dim: int = 16, n_classes: int = 7, seed: int = 0, duplicates: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes (every metric strictly between 0 and 1), off the origin, with one class of a
    single item and (`duplicates`) a few equal points of different classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes - 1, n)
    y[0] = n_classes - 1  # alone in its class
    x = rng.normal(size=(n_classes, dim))[y] * 0.5 + rng.normal(size=(n, dim)) + 3.0
    if duplicates:
        x[10:14] = x[20]
    return x.astype(np.float32), y


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
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 3 * 4 * 400 * 9)  # blocks of 9 queries
    ours = retrieval_scores(x, y, knn_k=5, distance=distance)
    assert 0.2 < ours["precision_at_1"] < 0.95 and 0.1 < ours["map_at_r"] < 0.9
    # Both rank float32 distances (computed in other orders): at most a near-tie apart.
    assert ours["precision_at_1"] == pytest.approx(reference["precision_at_1"], abs=1 / len(x))
    assert ours["map_at_r"] == pytest.approx(reference["mean_average_precision_at_r"], abs=1 / len(x))


def test_one_pass_serves_both_distances_and_cosine_is_euclidean_on_unit_vectors(monkeypatch):
    x, y = blobs(seed=1)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 3 * 4 * 400 * 50)
    both = metrics.retrieval_by_distance(x, y, knn_k=5, distances=("euclidean", "cosine"))
    assert both["euclidean"] == retrieval_scores(x, y, knn_k=5)
    assert both["cosine"] == retrieval_scores(x, y, knn_k=5, distance="cosine")
    assert both["euclidean"] != both["cosine"]  # the data tells them apart
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert retrieval_scores(unit, y, knn_k=5) == pytest.approx(both["cosine"], abs=1 / len(x))


def test_no_block_holds_n_by_n_and_every_query_is_searched_once(monkeypatch):
    n = 1500
    x, y = blobs(n=n, seed=2)
    shapes = []
    products = metrics._Items.products

    def spy(self, lo, hi):
        out = products(self, lo, hi)
        shapes.append((lo, hi, tuple(out.shape)))
        return out

    monkeypatch.setattr(metrics._Items, "products", spy)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 2**20)
    blocked = retrieval_scores(x, y, knn_k=5)
    assert all(hi - lo <= 2**20 // (12 * n) and shape == (hi - lo, n) for lo, hi, shape in shapes)
    assert [lo for lo, _, _ in shapes] == sorted({lo for lo, _, _ in shapes}) and shapes[-1][1] == n
    assert sum(hi - lo for lo, hi, _ in shapes) == n
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 2**34)  # everything in one block
    assert retrieval_scores(x, y, knn_k=5) == pytest.approx(blocked, abs=1e-12)


def test_equal_distances_rank_in_index_order():
    # Items 0-3 at one point, classes 0, 1, 0, 1; items 4 and 5 (classes 0, 1) one apart, far away.
    # Nearest others in index order: 0 -> 1 (wrong), 1 -> 0, 2 -> 0 (right), 3 -> 0, 4 -> 5, 5 -> 4.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
    y = np.array([0, 1, 0, 1, 0, 1])
    items = metrics._Items(x, torch.device("cpu"))
    order = metrics._nearest(items.distances("euclidean", items.products(0, 6), 0, 6), 0, 2)
    assert order.tolist() == [[1, 2], [0, 2], [0, 1], [0, 1], [5, 0], [4, 0]]
    assert retrieval_scores(x, y, knn_k=1)["precision_at_1"] == pytest.approx(1 / 6)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_the_search_runs_on_the_compute_device_with_the_cpus_numbers(device):
    # The same code on every device; on a GPU machine this compares the GPU with the CPU.
    x, y = blobs(n=600, seed=3)
    on_cpu = metrics.retrieval_by_distance(x, y, knn_k=5, device=torch.device("cpu"))
    here = metrics.retrieval_by_distance(x, y, knn_k=5, device=torch.device(device))
    for name in ("euclidean", "cosine"):
        assert here[name] == pytest.approx(on_cpu[name], abs=2 / len(x))  # at most a near-tie apart
