"""End to end: the real `dvc repro`, `dvc exp run -S shots=...` and `dvc metrics diff`
in a temporary git repository, on generated data, with a tiny model on the CPU."""

from __future__ import annotations

import json

import pytest

from tests.helpers import project_copy, run, tiny_params


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    params = tiny_params(methods=["classification", "triplet"])
    return project_copy(tmp_path_factory.mktemp("e2e") / "project", params)


def test_repro_then_experiment_then_metrics_diff(repo):
    out = run(["dvc", "repro"], repo).stdout
    for stage in ("download@synthetic", "split@synthetic", "decode@synthetic", "weights",
                  "train@synthetic-classification-0", "train@synthetic-triplet-0", "evaluate@synthetic-triplet-0",
                  "umap@synthetic-triplet-0", "report"):
        assert f"Running stage '{stage}'" in out, stage
    for method in ("classification", "triplet"):
        metrics = json.loads((repo / f"metrics/synthetic/{method}/seed0.json").read_text())
        assert 0 <= metrics["kmeans_acc"] <= 1 and metrics["n_test"] == 9 and metrics["n_classes"] == 3
        predictions = (repo / f"data/predictions/synthetic/{method}/seed0.csv").read_text().splitlines()
        assert len(predictions) == 1 + 9
        assert (repo / f"plots/umap/synthetic_{method}_seed0.png").is_file()
    summary = json.loads((repo / "report/summary.json").read_text())
    assert set(summary["synthetic"]) == {"classification", "triplet", "comparisons"}
    assert set(summary["synthetic"]["comparisons"]["triplet_vs_classification"]["per_seed"]) == {"0"}
    for picture in ("summary.png", "umap_grid.png", "curves_synthetic.png"):
        assert (repo / "plots/report" / picture).is_file()

    # Nothing changed: nothing reruns.
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    assert shown  # the declared metrics are listed

    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "baseline run"], repo)

    # A k-shot experiment reruns split and everything after it, not the download or the decode.
    out = run(["dvc", "exp", "run", "-S", "shots=2"], repo).stdout
    assert "Running stage 'split@synthetic'" in out
    assert "Running stage 'train@synthetic-triplet-0'" in out
    assert "Running stage 'download@synthetic'" not in out
    assert "Running stage 'decode@synthetic'" not in out
    assert "Running stage 'weights'" not in out
    train_rows = (repo / "data/splits/synthetic/train.csv").read_text().strip().splitlines()
    assert len(train_rows) == 1 + 2 * 3  # header + 2 shots x 3 classes

    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], repo).stdout)
    assert "metrics/synthetic/triplet/seed0.json" in diff and "report/summary.json" in diff
    assert "kmeans_acc" in diff["metrics/synthetic/triplet/seed0.json"]
    assert "synthetic.triplet.shots" in diff["report/summary.json"]
    assert diff["report/summary.json"]["synthetic.triplet.shots"]["new"] == 2

    exps = run(["dvc", "exp", "show", "--json"], repo).stdout
    assert "shots" in exps


def test_changing_a_method_param_reruns_only_that_method(repo):
    out = run(["dvc", "exp", "run", "-S", "triplet.margin=0.5"], repo).stdout
    assert "Running stage 'train@synthetic-triplet-0'" in out
    assert "Running stage 'train@synthetic-classification-0'" not in out
    assert "Running stage 'split@synthetic'" not in out


def test_the_studys_triplet_sampling_is_one_param_away_and_its_leak_shows_in_the_diff(repo):
    out = run(["dvc", "exp", "run", "-S", "triplet.pool=study"], repo).stdout
    assert "Running stage 'train@synthetic-triplet-0'" in out
    assert "Running stage 'train@synthetic-classification-0'" not in out
    metrics = json.loads((repo / "metrics/synthetic/triplet/seed0.json").read_text())
    assert metrics["triplet_pool"] == "study" and metrics["leak"]["test_in_pool"] == metrics["n_test"] == 9
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    changed = diff["metrics/synthetic/triplet/seed0.json"]
    assert changed["leak.test_in_pool"] == {"old": 0, "new": 9, "diff": 9}
    summary = (repo / "report/summary.md").read_text()
    assert "triplet is not clean" in summary and "9 test images were in the pool" in summary
