"""The chance level of K-means accuracy in every metrics file (issue 20): for each view, the
fitted clustering the stage wrote (data/predictions' `cluster`, `cluster_l2`) matched by the
Hungarian method against seeded permutations of the labels, checked against a naive loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.arrays import save_npz
from stages.lib.metrics import matched_accuracy
from tests.helpers import run_evaluate, tiny_params


def write_embeddings(path) -> np.ndarray:
    """Three weakly separated classes of unequal size: raw and L2 K-means cluster differently."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), [9, 7, 5])
    x = rng.normal(size=(3, 5))[labels] * 0.8 + rng.normal(size=(len(labels), 5))
    x *= rng.uniform(0.3, 3, size=(len(labels), 1))
    save_npz(path, embeddings=x.astype(np.float32), labels=labels,
             paths=np.array([f"images/{i}.jpg" for i in range(len(labels))]), rows=np.arange(len(labels)),
             classes=np.array(["a", "b", "c"]), run=np.array(json.dumps({"leak": {}, "triplet_pool": None})))
    return labels


def run(tmp_path, name: str, bootstrap_seed: int) -> tuple[dict, pd.DataFrame]:
    raw = tiny_params()
    raw["evaluate"]["bootstrap_seed"] = bootstrap_seed
    return run_evaluate(tmp_path, name, raw)


def naive_chance(labels: np.ndarray, clusters: np.ndarray, seed: int, permutations: int = 200) -> dict:
    """One permutation at a time: numpy's Generator(seed) permutes the image order, the permuted
    labels are matched to the clusters by metrics.matched_accuracy."""
    rng = np.random.default_rng(seed)
    accuracies = [matched_accuracy(labels[rng.permutation(len(labels))], clusters) for _ in range(permutations)]
    return {"mean": float(np.mean(accuracies)), "p95": float(np.quantile(accuracies, 0.95))}


@pytest.mark.parametrize("seed", [0, 11])
def test_each_view_carries_the_chance_level_of_its_own_clustering(tmp_path, seed):
    labels = write_embeddings(tmp_path / "emb.npz")
    metrics, table = run(tmp_path, f"seed{seed}", seed)
    assert not np.array_equal(table["cluster"], table["cluster_l2"])  # the two views are two clusterings
    for chance, column in ((metrics["kmeans_acc_chance"], "cluster"), (metrics["l2"]["kmeans_acc_chance"],
                                                                         "cluster_l2")):
        expected = naive_chance(labels, table[column].to_numpy(), seed)
        assert chance["mean"] == pytest.approx(expected["mean"], abs=5e-7)
        assert chance["p95"] == pytest.approx(expected["p95"], abs=5e-7)
        assert (chance["permutations"], chance["seed"]) == (200, seed)
        # above 1/3 (guessing): the matching is optimistic; at most the best any clustering could do
        assert 1 / 3 < chance["mean"] <= chance["p95"] < 1


def test_the_permutations_follow_the_bootstrap_seed(tmp_path):
    write_embeddings(tmp_path / "emb.npz")
    zero, _ = run(tmp_path, "zero", 0)
    other, _ = run(tmp_path, "other", 11)
    assert zero["kmeans_acc_chance"]["mean"] != other["kmeans_acc_chance"]["mean"]
