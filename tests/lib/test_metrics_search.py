"""The exact neighbour search behind the retrieval metrics: blocks of queries within the memory
budget, the buffers it writes into, one pass for several rankings, equal distances in index
order, float32 accuracy (centring, rows in chunks), the block product (numpy's or torch's) and the
device it runs on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.lib import metrics
from stages.lib.metrics import (
    RANKINGS,
    evaluate_embeddings,
    retrieval_by_distance,
    retrieval_scores,
)
from tests.lib.metrics_cases import angle_distances, blobs, budget, naive, ranked


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


def test_one_pass_serves_both_distances_and_cosine_is_euclidean_on_unit_vectors(monkeypatch):
    x, y = blobs(seed=1)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: budget(50, y, 5))
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
    # Blocks of 58 queries. (Other block shapes may tip a near-tie deep in a ranking: numpy's BLAS
    # rounds a product by the block's shape, 2.5e-8 of MAP@R here with blocks of 34.)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: budget(58, y, 5))
    blocked = retrieval_scores(x, y, knn_k=5)
    assert all(hi - lo <= 58 and shape == (hi - lo, n) for lo, hi, shape in shapes)
    assert [lo for lo, _, _ in shapes] == sorted({lo for lo, _, _ in shapes}) and shapes[-1][1] == n
    assert sum(hi - lo for lo, hi, _ in shapes) == n
    monkeypatch.setattr(metrics, "block_bytes", lambda device: 2**34)  # everything in one block
    # 1e-6: far below what one query searched twice or left out moves (1/n = 6.7e-4 of P@1), far above
    # the BLAS rounding of a product by its shape and thread split (up to 3.6e-9 of MAP@R seen on a
    # loaded 2-core machine, where the one-block value itself varied from run to run at 1e-9)
    assert retrieval_scores(x, y, knn_k=5) == pytest.approx(blocked, abs=1e-6)


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


@pytest.mark.parametrize("last", [42, 41], ids=["ties across the k-th place, k = N - 2", "ties inside the first k"])
def test_many_equal_distances_not_the_nearest_come_in_index_order(last):
    # One query (item 0) of 43 items, its k = 41 nearest asked for: item 1 at distance 1, items 2 to
    # `last` at 2 (41 or 40 of them), the rest at 3. torch.topk and an unstable sort return 20 or more
    # equal values in no particular order.
    row = torch.full((1, 43), 3.0)
    row[0, 1], row[0, 2 : last + 1] = 1.0, 2.0
    order = metrics._nearest(row, 0, 41)
    assert order[0].tolist() == list(range(1, 42))


@pytest.mark.parametrize("lengths", ["alike", "spread"])
def test_rows_beyond_the_first_chunks_are_searched_too(lengths):
    # The embeddings are centred (and, for rows far shorter than the mean, normalised) in chunks of
    # 2**22 / D rows: with D = 2**19 that is 8 rows, so 20 rows take three chunks and every one of
    # them must reach the search (a loop over too few chunks leaves rows unwritten). The data ranks
    # the same in float32 as in float64: every row's nearest others are at least 10 times their
    # float32 error apart, and its cosines 8 times (an offset of 0.5 made every row almost parallel
    # to it: cosines 1e-7 apart, ranked by the BLAS's rounding).
    rng = np.random.default_rng(5)
    y = np.arange(20) % 4
    x = rng.normal(size=(4, 6))[y] + 0.3 * rng.normal(size=(20, 6))
    x = x @ rng.normal(size=(6, 2**19)) / 2**9.5 + 0.003  # an offset as long as the rest: a mean to centre
    if lengths == "spread":
        x *= np.exp(rng.uniform(-5, 1, size=(20, 1)))
    assert (metrics._Items(x, torch.device("cpu")).unit is not None) == (lengths == "spread")
    searched = retrieval_by_distance(x, y, knn_k=3, distances=("euclidean", "cosine", "euclidean_l2"))
    gram = x @ x.T
    squared = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram
    assert searched["euclidean"] == pytest.approx(ranked(squared, y, 3), abs=1e-12)
    assert searched["cosine"] == pytest.approx(ranked(angle_distances(x, 1.0, 1.0), y, 3), abs=1e-12)
    assert searched["euclidean_l2"] == searched["cosine"]  # no zero rows: the same order


def separated(lengths: str, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Float32 blobs in 6 overlapping classes, off the origin; `spread`: every 7th row 100 times
    shorter (the angles then come from the normalised copy, `_Items.unit`). Chosen so that every
    product ranks them alike: in every row, consecutive squared distances are at least 94 (alike)
    and 6.9 (spread) times the row's float32 error apart, and consecutive cosines 2.4e-6 apart
    (float32 cosines of 16 dimensions are off by about 2e-7)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 6
    x = rng.normal(size=(6, 16))[y] + rng.normal(size=(n, 16)) + 2.0
    if lengths == "spread":
        x[::7] *= 0.01
    return x.astype(np.float32), y


@pytest.mark.parametrize("lengths", ["alike", "spread"])
@pytest.mark.parametrize("distances", [("euclidean",), ("euclidean", "euclidean_l2"), RANKINGS])
@pytest.mark.filterwarnings("error")  # torch resizing an `out=` block (of the wrong shape) warns
def test_every_block_is_written_into_the_buffers_allocated_once(monkeypatch, lengths, distances):
    # The search allocates its rows x N blocks once, one for the products and one more when it
    # ranks more than one way, and every block's product and distances are written into them:
    # a new block per step is fresh memory from the system each time (page faults as costly as
    # the distances). Mutants that drop an `out=` still give the right numbers, so this checks
    # where each block lands, and that the last, shorter block is written into the first rows of a
    # buffer (a slice of another shape still gives the right numbers, torch resizing it with a
    # warning).
    x, y = separated(lengths)
    assert (metrics._Items(x, torch.device("cpu")).unit is not None) == (lengths == "spread")
    n, rows = len(x), 7
    monkeypatch.setattr(metrics, "block_bytes", lambda device: budget(rows, y, 5))  # 7 blocks, the last of 6
    allocated, written = [], []
    empty, matmul, distances_of = torch.empty, metrics._matmul, metrics._Items.distances

    def counting_empty(*shape, **kwargs):
        out = empty(*shape, **kwargs)
        if tuple(out.shape) == (rows, n):
            allocated.append(out.data_ptr())
        return out

    def products_into(queries, items, out=None, **kwargs):
        assert out is not None  # never a block of its own
        return matmul(queries, items, out, **kwargs)

    def distances_into(self, *args, **kwargs):
        out = distances_of(self, *args, **kwargs)
        written.append(out.data_ptr())
        return out

    monkeypatch.setattr(torch, "empty", counting_empty)
    monkeypatch.setattr(metrics, "_matmul", products_into)
    monkeypatch.setattr(metrics._Items, "distances", distances_into)
    scores = retrieval_by_distance(x, y, knn_k=5, distances=distances)
    assert len(allocated) == min(2, len(distances))
    assert len(written) == 7 * len(distances) and set(written) == set(allocated)
    monkeypatch.undo()  # one block: the same numbers
    whole = retrieval_by_distance(x, y, knn_k=5, distances=distances)
    assert all(scores[d] == pytest.approx(whole[d], abs=1e-12) for d in distances)


@pytest.mark.parametrize("lengths", ["alike", "spread"])
def test_the_cpu_product_is_numpys_and_torchs_the_gpus_gives_the_same_numbers(monkeypatch, lengths):
    # On the CPU the block product goes through numpy's BLAS (faster here than torch's); on a GPU
    # through torch's `mm`, which `cpu_product="torch"` runs on the CPU: the same
    # numbers as numpy's product and as the brute-force ranking of the whole matrix.
    x, y = separated(lengths)
    calls = {"numpy": 0, "torch": 0}
    np_matmul, torch_mm = np.matmul, torch.mm

    def numpy_product(*args, **kwargs):
        calls["numpy"] += 1
        return np_matmul(*args, **kwargs)

    def torch_product(*args, **kwargs):
        calls["torch"] += 1
        return torch_mm(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", numpy_product)
    monkeypatch.setattr(torch, "mm", torch_product)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: budget(6, y, 5))  # 8 blocks
    rankings = ("euclidean", "cosine", "euclidean_l2")
    by_numpy = retrieval_by_distance(x, y, knn_k=5, distances=rankings)
    assert calls == {"numpy": 8 * (1 + 2 * (lengths == "spread")), "torch": 0}  # the angles: normalised copy
    calls.update(numpy=0)
    by_torch = retrieval_by_distance(x, y, knn_k=5, distances=rankings, cpu_product="torch")
    assert calls == {"numpy": 0, "torch": 8 * (1 + 2 * (lengths == "spread"))}
    assert all(by_torch[d] == pytest.approx(by_numpy[d], abs=1e-12) for d in rankings)
    x = x.astype(np.float64)
    gram = x @ x.T
    squared = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram
    assert by_torch["euclidean"] == pytest.approx(ranked(squared, y, 5), abs=1e-12)
    assert by_torch["cosine"] == pytest.approx(ranked(angle_distances(x, 1.0, 1.0), y, 5), abs=1e-12)
    assert 0.4 < by_torch["euclidean"]["map_at_r"] < 0.9  # not a ranking that anything gets right


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
    monkeypatch.setattr(metrics, "_Items", lambda x, device, **kw: used.append(device) or items(x, device, **kw))
    x, y = blobs(n=60, seed=5)
    metrics.evaluate_embeddings(x, y, n_init=1, seed=0, kmeans_repeats=1, knn_k=3, bootstrap_resamples=10)
    assert used == ["asked", torch.device("cpu")]  # asked once, for one search serving both views


def test_the_device_given_is_the_one_searched_on(monkeypatch):
    # The default device comes from `compute_device`; a device given must be used instead of asking.
    def unwanted():
        raise AssertionError("compute_device asked although a device was given")

    monkeypatch.setattr(metrics, "compute_device", unwanted)
    x, y = np.array([[0.0, 0], [0, 1], [0, 2], [10, 0], [10, 1], [10, 2]]), np.array([0, 0, 0, 1, 1, 1])
    cpu = torch.device("cpu")
    assert retrieval_scores(x, y, knn_k=1, device=cpu) == {"precision_at_1": 1.0, "map_at_r": 1.0, "knn_acc": 1.0}
    scores, _ = evaluate_embeddings(x, y, n_init=1, seed=0, knn_k=1, bootstrap_resamples=10, device=cpu)
    assert scores["precision_at_1"] == 1.0


def test_the_blocks_and_the_neighbours_kept_fit_the_memory_budget(monkeypatch):
    # One class of most of the set: every query keeps K = 1,399 neighbours, whose labels, indices,
    # masks and running sums (48 bytes each per query) outweigh its 1,500 distances. The blocks must
    # fit the budget with them; counting the distances alone would take blocks of 58 queries, 4.7
    # times the budget.
    n, budget = 1500, 2**20
    y = np.r_[np.zeros(1400, dtype=int), np.arange(100) % 4 + 1]
    x = np.random.default_rng(7).normal(size=(n, 4)).astype(np.float32) + y[:, None]
    k = 1399
    blocks = []
    products = metrics._Items.products

    def spy(self, lo, hi, out=None):
        blocks.append(hi - lo)
        return products(self, lo, hi, out)

    monkeypatch.setattr(metrics._Items, "products", spy)
    monkeypatch.setattr(metrics, "block_bytes", lambda device: budget)
    scores = retrieval_scores(x, y, knn_k=5)
    per_query = 3 * 4 * n + metrics.NEIGHBOUR_BYTES * (k + 1)
    assert max(blocks) == budget // per_query == 12 and sum(blocks) == n
    assert metrics.block_rows(n, k, budget) == 12 and metrics.block_rows(n, 0, budget) == budget // (12 * n + 48)
    assert metrics.block_rows(10, 5, 1) == 1 and metrics.block_rows(10, 5, 2**30) == 10  # at least one, at most N
    monkeypatch.undo()
    assert scores == pytest.approx(retrieval_scores(x, y, knn_k=5), abs=1e-12)  # one block: the same numbers


def test_the_search_refuses_an_unknown_cpu_product():
    with pytest.raises(ValueError, match="cpu_product must be numpy or torch, got 'blas'"):
        retrieval_by_distance(np.zeros((3, 2)), np.zeros(3, dtype=int), knn_k=1, cpu_product="blas")
