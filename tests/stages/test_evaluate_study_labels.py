"""`evaluate.labels: study` (issue 20): the evaluate stage scores a run the study's way, every image
of the test list (in its order) labelled as the first image of its batch of four, checked on
hand-made lists whose mislabelled count is known, against naive loops written here."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from stages import evaluate, pictures
from stages.lib.arrays import save_npz
from tests.helpers import run_evaluate, tiny_params

# Test lists as (class, images) blocks in list order, and how many images the study mislabels:
# 6 per class (15-shot DeFungi's list: 4 of 30); blocks of 5, 2, 7, 3, 6 in a shuffled class order,
# where the class with 2 images never starts a batch (3 + 2 + 3 = 8 of 23).
LISTS = {
    "defungi-15": ([(0, 6), (1, 6), (2, 6), (3, 6), (4, 6)], 4),
    "uneven": ([(2, 5), (0, 2), (4, 7), (1, 3), (3, 6)], 8),
}


def naive_study_labels(labels: list[int]) -> list[int]:
    """Read the list in batches of four, as a DataLoader(batch_size=4, shuffle=False) does, and give
    every image its batch's first label."""
    out = []
    for start in range(0, len(labels), 4):
        batch = labels[start:start + 4]
        out += [batch[0]] * len(batch)
    return out


def naive_matched_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """The best one-to-one matching of clusters to labels, by trying every assignment."""
    cluster_ids, classes = sorted(set(clusters)), sorted(set(labels))
    best = 0
    for chosen in itertools.permutations(cluster_ids, len(classes)) if len(classes) <= len(cluster_ids) else ():
        hits = sum(int(np.sum((clusters == c) & (labels == k))) for c, k in zip(chosen, classes, strict=True))
        best = max(best, hits)
    return best / len(labels)


def naive_precision_at_1(x: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out: is each image's nearest other image (Euclidean) of its label; over the images
    whose label has another image."""
    hits, counted = 0, 0
    for i in range(len(x)):
        if np.sum(labels == labels[i]) < 2:
            continue
        distances = [np.linalg.norm(x[i] - x[j]) if j != i else np.inf for j in range(len(x))]
        hits += int(labels[int(np.argmin(distances))] == labels[i])
        counted += 1
    return hits / counted


def write_embeddings(path, blocks) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated classes, one block per (class, count) in list order."""
    labels = np.concatenate([np.full(count, label) for label, count in blocks])
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(5, 6)) * 50)[labels] + rng.normal(size=(len(labels), 6))
    save_npz(path, embeddings=x.astype(np.float32), labels=labels,
             paths=np.array([f"images/{i}.jpg" for i in range(len(labels))]), rows=np.arange(len(labels)),
             classes=np.array(list("abcde")), run=np.array(json.dumps({"leak": {}, "triplet_pool": None})))
    return labels, x


def run(tmp_path, name: str, labels) -> tuple[dict, pd.DataFrame]:
    raw = tiny_params()
    raw["evaluate"]["labels"] = labels
    return run_evaluate(tmp_path, name, raw)


@pytest.mark.parametrize("name", LISTS)
def test_the_study_labels_score_every_label_based_metric(tmp_path, name):
    blocks, wrong = LISTS[name]
    labels, x = write_embeddings(tmp_path / "emb.npz", blocks)
    scored = np.array(naive_study_labels(labels.tolist()))
    assert int(np.sum(scored != labels)) == wrong  # the hand count above, by the naive loop

    true, true_table = run(tmp_path, "true", True)
    study, table = run(tmp_path, "study", "study")
    assert (study["labels"], study["mislabelled"]) == ("study", wrong)
    assert (study["n_test"], study["n_classes"]) == (len(labels), 5)
    # The same clustering (as many clusters as true classes, even where a class starts no batch),
    # scored against other labels.
    assert table["cluster"].tolist() == true_table["cluster"].tolist()
    assert table["cluster"].nunique() == 5 and true["kmeans_acc"] == 1.0
    assert table["label"].tolist() == labels.tolist() and table["study_label"].tolist() == scored.tolist()
    clusters = table["cluster"].to_numpy()
    assert study["kmeans_acc"] == pytest.approx(naive_matched_accuracy(scored, clusters), abs=5e-7)
    assert study["kmeans_acc"] == pytest.approx(1 - wrong / len(labels), abs=5e-7)  # the clusters are the classes
    assert table["correct"].mean() == pytest.approx(study["kmeans_acc"], abs=5e-7)
    assert study["precision_at_1"] == pytest.approx(naive_precision_at_1(x, scored), abs=5e-7)
    assert true["precision_at_1"] == 1.0
    assert study["l2"]["kmeans_acc"] == pytest.approx(
        naive_matched_accuracy(scored, table["cluster_l2"].to_numpy()), abs=5e-7)
    # The pictures stage reads these predictions against the embeddings' (true) labels.
    assert pictures.read_predictions(tmp_path / "study.csv", labels).tolist() == table["predicted"].tolist()


def test_the_default_scores_the_true_labels_and_writes_as_before(tmp_path):
    labels, _ = write_embeddings(tmp_path / "emb.npz", LISTS["uneven"][0])
    metrics, table = run(tmp_path, "true", True)
    assert "labels" not in metrics and "mislabelled" not in metrics
    assert list(table.columns) == evaluate.PREDICTION_COLUMNS
    assert table["label"].tolist() == labels.tolist() and metrics["kmeans_acc"] == 1.0
