"""Retrieval metrics (precision@1, MAP@R, k-NN accuracy) and K-means accuracy's spread over seeds,
each checked on a case worked by hand, and the retrieval metrics against a naive loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
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


def test_kmeans_init_std_is_over_single_initialisation_runs_from_kmeans_seed(monkeypatch):
    # Scripted K-means: the study's run (10 inits, seed 7) is perfect; the single-init runs with seeds
    # 7, 8, 9 score 1, 1/2, 3/4 -> population std sqrt(((1/4)^2 + (1/4)^2 + 0) / 3) = sqrt(1/24).
    # The L2-normalised view repeats the study's run only.
    labels = np.array([0, 0, 1, 1])
    scripted = {(10, 7): [0, 0, 1, 1], (1, 7): [1, 1, 0, 0], (1, 8): [0, 1, 0, 1], (1, 9): [0, 0, 0, 1]}
    calls = []

    def fake_kmeans(embeddings, n_clusters, *, n_init, seed, overwrite=False):
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


def test_the_evaluate_stage_writes_the_scores_of_its_params_and_the_run_record(tmp_path, params_file):
    import yaml

    params = yaml.safe_load(params_file.read_text())
    params["evaluate"].update(kmeans_n_init=3, kmeans_seed=5, kmeans_repeats=2, knn_k=3, distance="cosine",
                              bootstrap_resamples=2000, bootstrap_seed=11)
    params_file.write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6)
    x = (rng.normal(size=(3, 8))[labels] + rng.normal(size=(18, 8)) * 0.8).astype(np.float32)
    run = {"leak": {"test_in_train": 2, "test_in_pool": 7, "groups_across": 1, "val_in_train": 0,
                    "anchors_outside_train": 0}, "triplet_pool": "study"}
    save_npz(tmp_path / "emb.npz", embeddings=x, labels=labels, paths=np.array([f"p{i}" for i in range(18)]),
             rows=np.arange(100, 118), run=np.array(json.dumps(run)))
    evaluate.main(["--params", str(params_file), "--embeddings", str(tmp_path / "emb.npz"),
                   "--out", str(tmp_path / "m.json"), "--predictions", str(tmp_path / "p.csv")])
    written = json.loads((tmp_path / "m.json").read_text())
    expected, per_image = metrics.evaluate_embeddings(
        x, labels, n_init=3, seed=5, kmeans_repeats=2, knn_k=3, distance="cosine", bootstrap_resamples=2000,
        bootstrap_seed=11)
    assert written == evaluate.rounded({**expected, "n_test": 18, "n_classes": 3, **run})
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table["row"]) == list(range(100, 118)) and list(table["path"]) == [f"p{i}" for i in range(18)]
    assert (table["predicted"] == per_image["predicted"]).all() and table["correct"].mean() == pytest.approx(
        written["kmeans_acc"], abs=1e-6)


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

    def spy(self, lo, hi, out=None):
        out = products(self, lo, hi, out)
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
    # Many equal distances (which torch.topk returns in no particular order), at and past the k-th place.
    x = np.zeros((40, 2))
    x[::7] = 1.0
    items = metrics._Items(x, torch.device("cpu"))
    order = metrics._nearest(items.distances("euclidean", items.products(0, 40), 0, 40), 0, 5)
    assert order[0].tolist() == [7, 14, 21, 28, 35] and order[1].tolist() == [2, 3, 4, 5, 6]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_the_search_on_each_device_gives_the_naive_loops_numbers(device, monkeypatch):
    # The code that runs on a GPU, run here on every device there is (on a GPU machine: the GPU too),
    # in blocks sized as on a GPU with 64 KiB free, against the naive loop on the CPU.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**16, 2**30))
    rows = metrics.block_bytes(torch.device("cuda")) // (3 * 4 * 120)
    assert rows == 2**14 // (12 * 120) == 11  # a quarter of what is free
    monkeypatch.setattr(metrics, "block_bytes", lambda d: 2**14)
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(6), [2, 10, 14, 20, 30, 44])
    x = rng.normal(size=(6, 8))[y] * 1.5 + rng.normal(size=(len(y), 8)) + 40.0
    here = metrics.retrieval_by_distance(x, y, knn_k=5, distances=("euclidean",), device=torch.device(device))
    assert here["euclidean"] == pytest.approx(naive(x, y, 5), abs=1e-9)
    assert 0.3 < here["euclidean"]["map_at_r"] < 0.95  # the data leaves room to be wrong


def test_the_stage_searches_on_the_compute_device(monkeypatch):
    used = []
    monkeypatch.setattr(metrics, "compute_device", lambda: used.append("asked") or torch.device("cpu"))
    items = metrics._Items
    monkeypatch.setattr(metrics, "_Items", lambda x, device: used.append(device) or items(x, device))
    x, y = blobs(n=60, seed=5)
    metrics.evaluate_embeddings(x, y, n_init=1, seed=0, kmeans_repeats=1, knn_k=3, bootstrap_resamples=10)
    assert used == ["asked", torch.device("cpu")]  # asked once, for one search serving both views


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
