"""The evaluate stage writes the values `embedding_scores` gives on the same arrays with the params
it was given, and each evaluate param reaches the metrics.

The embeddings are four overlapping classes with image-to-image differences of scale, chosen so
that each of `kmeans_n_init`, `kmeans_seed`, `kmeans_repeats`, `knn_k` and `distance` changes
some metric (checked here too, so a param the stage ignored could not pass unnoticed).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from stages import evaluate
from stages.lib import metrics
from stages.lib.arrays import save_npz
from stages.lib.metrics import embedding_scores
from stages.lib.params import load_params
from tests.helpers import tiny_params, write_params

# Non-default values; each is changed, one at a time, to the second value.
CHOSEN = {"kmeans_n_init": 2, "kmeans_seed": 7, "kmeans_repeats": 4, "knn_k": 3, "distance": "cosine"}
CHANGED = {"kmeans_n_init": 1, "kmeans_seed": 0, "kmeans_repeats": 1, "knn_k": 5, "distance": "euclidean"}
ARGUMENT = {"kmeans_n_init": "n_init", "kmeans_seed": "seed"}  # evaluate param -> embedding_scores argument
ROUNDING = 5e-7  # the stage writes floats rounded to 6 decimals


def embeddings() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 15)
    x = rng.normal(size=(4, 6))[labels] * 1.2 + rng.normal(size=(60, 6))
    return (x * rng.uniform(0.2, 3, size=(60, 1))).astype(np.float32), labels


def write_embeddings(path) -> tuple[np.ndarray, np.ndarray]:
    x, labels = embeddings()
    save_npz(path, embeddings=x, labels=labels, paths=np.array([f"images/{i}.jpg" for i in range(len(x))]),
             rows=np.arange(len(x)), classes=np.array(["a", "b", "c", "d"]),
             run=np.array(json.dumps({"leak": {}, "triplet_pool": None})))
    return x, labels


@pytest.fixture
def run_stage(tmp_path, capsys):
    """evaluate.main with a given evaluate section; returns (the metrics file, the params' settings
    as `embedding_scores` arguments)."""
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    extra = "--predictions" in capsys.readouterr().out  # a stage that also writes per-image predictions

    def run(name: str, section: dict) -> tuple[dict, dict]:
        raw = tiny_params()
        raw["evaluate"].update(section)
        p = write_params(tmp_path / f"{name}.yaml", raw)
        argv = ["--params", str(p), "--embeddings", str(tmp_path / "emb.npz"), "--out", str(tmp_path / f"{name}.json")]
        evaluate.main(argv + (["--predictions", str(tmp_path / f"{name}.csv")] if extra else []))
        # evaluate.labels picks the labels scored against, not an argument (test_evaluate_study_labels.py)
        settings = {ARGUMENT.get(k, k): v for k, v in dataclasses.asdict(load_params(p).evaluate).items()
                    if k != "labels"}
        return json.loads((tmp_path / f"{name}.json").read_text()), settings

    return run


def assert_written_as(written, expected, where: str = "") -> None:
    """`written` (from the JSON file) equals `expected` (floats up to the stage's rounding), recursively."""
    if isinstance(expected, dict):
        assert isinstance(written, dict), where
        for key, value in expected.items():
            assert key in written, f"{where}{key} missing from the metrics file"
            assert_written_as(written[key], value, f"{where}{key}.")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(written, list) and len(written) == len(expected), where
        for i, (w, e) in enumerate(zip(written, expected, strict=True)):
            assert_written_as(w, e, f"{where}{i}.")
    elif isinstance(expected, float):
        assert math.isclose(written, expected, rel_tol=0, abs_tol=ROUNDING), f"{where}: {written} != {expected}"
    else:
        assert written == expected, where


def test_the_stage_writes_embedding_scores_with_its_params(tmp_path, run_stage):
    x, labels = write_embeddings(tmp_path / "emb.npz")
    written, settings = run_stage("chosen", CHOSEN)
    expected = embedding_scores(x, labels, **settings)
    assert len(expected) >= 7
    assert_written_as(written, expected)
    assert written["n_test"] == 60 and written["n_classes"] == 4


@pytest.mark.parametrize("key", sorted(CHOSEN))
def test_each_evaluate_param_reaches_the_metrics(tmp_path, run_stage, key):
    x, labels = write_embeddings(tmp_path / "emb.npz")
    chosen, chosen_settings = run_stage("chosen", CHOSEN)
    changed, changed_settings = run_stage("changed", {**CHOSEN, key: CHANGED[key]})
    assert changed_settings == {**chosen_settings, ARGUMENT.get(key, key): CHANGED[key]}
    assert chosen != changed, f"evaluate.{key} {CHOSEN[key]} -> {CHANGED[key]} changed no metric"
    assert_written_as(changed, embedding_scores(x, labels, **changed_settings))


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
    # the chance levels beside K-means accuracy (tests/stages/test_evaluate_chance.py checks their values)
    assert written.pop("kmeans_acc_chance")["permutations"] == written["l2"].pop("kmeans_acc_chance")["permutations"]
    expected, per_image = metrics.evaluate_embeddings(
        x, labels, n_init=3, seed=5, kmeans_repeats=2, knn_k=3, distance="cosine", bootstrap_resamples=2000,
        bootstrap_seed=11)
    assert written == evaluate.rounded({**expected, "n_test": 18, "n_classes": 3, **run})
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table["row"]) == list(range(100, 118)) and list(table["path"]) == [f"p{i}" for i in range(18)]
    assert (table["predicted"] == per_image["predicted"]).all() and table["correct"].mean() == pytest.approx(
        written["kmeans_acc"], abs=1e-6)

