"""End to end: the real `dvc repro`, `dvc exp run -S shots=...` and `dvc metrics diff`
in a temporary git repository, on generated data, with a tiny model on the CPU; then two
experiments queued and run by two workers (`dvc queue start -j 2`), and one of them shared with a
second clone through a bare git repository and a local-folder DVC remote (as S3 would be), which
takes it without training anything (docs/scaling.md)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time

import pytest

from tests.helpers import env, project_copy, run, tiny_params

QUEUED = {"margin": "triplet.margin=0.5", "study-pool": "triplet.pool=study"}  # experiment name -> its -S


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    params = tiny_params(methods=["classification", "triplet"])
    root = tmp_path_factory.mktemp("e2e")
    repo = project_copy(root / "project", params)
    # The DVC remote is set in the commit experiments branch from: an experiment carries its commit's
    # .dvc/config (one made before would take the remote away when applied elsewhere).
    run(["dvc", "remote", "add", "-d", "storage", str(root / "storage")], repo)
    run(["git", "init", "-q", "--bare", "-b", "main", str(root / "origin.git")], root)
    run(["git", "remote", "add", "origin", str(root / "origin.git")], repo)
    run(["git", "commit", "-q", "-m", "DVC remote", ".dvc/config"], repo)
    return repo


def experiments(repo) -> dict[str, dict]:
    """`dvc exp show --json`: experiment name -> {"params": ..., "metrics": {path: ...}}."""
    out = {}
    for commit in json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout):
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                metrics = {path: m.get("data") for path, m in (data.get("metrics") or {}).items()}
                out[rev["name"]] = {"params": data["params"]["params.yaml"]["data"], "metrics": metrics}
    return out


@pytest.fixture(scope="module")
def queued(repo):
    """The two experiments of QUEUED, queued on the workspace the first test left (shots=2) and run
    by two workers at once; `dvc queue status` once they are done."""
    for name, change in QUEUED.items():
        said = run(["dvc", "exp", "run", "--queue", "-n", name, "-S", change], repo).stdout
        assert f"Queued experiment '{name}'" in said, said
    # The workers run detached: their output goes to DVC's queue logs, not to this pipe.
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=repo, env=env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    deadline = time.monotonic() + 900
    while True:
        status = run(["dvc", "queue", "status"], repo).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, f"the queue did not finish in 15 minutes:\n{status}"
        time.sleep(2)


def test_repro_then_experiment_then_metrics_diff(repo):
    out = run(["dvc", "repro"], repo).stdout
    for stage in ("check", "download@synthetic", "split@synthetic", "decode@synthetic", "weights",
                  "train@synthetic-classification-0", "train@synthetic-triplet-0", "evaluate@synthetic-triplet-0",
                  "umap@synthetic-triplet-0", "pictures@synthetic-triplet-0", "report"):
        assert f"Running stage '{stage}'" in out, stage
    for method in ("classification", "triplet"):
        metrics = json.loads((repo / f"metrics/synthetic/{method}/seed0.json").read_text())
        assert 0 <= metrics["kmeans_acc"] <= 1 and metrics["n_test"] == 9 and metrics["n_classes"] == 3
        predictions = (repo / f"data/predictions/synthetic/{method}/seed0.csv").read_text().splitlines()
        assert len(predictions) == 1 + 9
        for kind in ("umap", "retrieval", "confusion"):
            assert (repo / f"plots/{kind}/synthetic_{method}_seed0.png").is_file()
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
    assert set(diff) == {f"metrics/synthetic/{m}/seed0.json" for m in ("classification", "triplet")}  # one per run
    assert "kmeans_acc" in diff["metrics/synthetic/triplet/seed0.json"]
    assert json.loads((repo / "report/summary.json").read_text())["synthetic"]["triplet"]["shots"] == 2

    exps = run(["dvc", "exp", "show", "--json"], repo).stdout
    assert "shots" in exps


def test_a_queued_pair_runs_on_two_workers_and_reuses_the_common_stages(repo, queued):
    assert queued.count("Success") == len(QUEUED), queued
    exps = experiments(repo)
    assert set(exps) >= set(QUEUED)
    for name in QUEUED:
        assert name in queued
        metrics = exps[name]["metrics"]["metrics/synthetic/triplet/seed0.json"]
        assert metrics["n_test"] == 9 and 0 <= metrics["kmeans_acc"] <= 1, (name, metrics)
        log = run(["dvc", "queue", "logs", name], repo).stdout
        assert "Running stage 'train@synthetic-triplet-0'" in log
        for shared in ("download@synthetic", "decode@synthetic", "weights"):  # cached: run once, before
            assert f"Stage '{shared}' didn't change, skipping" in log and f"Running stage '{shared}'" not in log
    assert exps["margin"]["params"]["triplet"]["margin"] == 0.5 and exps["study-pool"]["params"]["triplet"][
        "pool"] == "study"
    assert {exps[n]["params"]["shots"] for n in QUEUED} == {2}  # queued on the workspace as it was


def test_changing_a_method_param_reruns_only_that_method(repo, queued):
    out = run(["dvc", "queue", "logs", "margin"], repo).stdout
    assert "Running stage 'train@synthetic-triplet-0'" in out
    assert "Running stage 'train@synthetic-classification-0'" not in out
    assert "Running stage 'split@synthetic'" not in out


def test_the_studys_triplet_sampling_is_one_param_away_and_its_leak_shows_in_the_diff(repo, queued):
    out = run(["dvc", "queue", "logs", "study-pool"], repo).stdout
    assert "Running stage 'train@synthetic-triplet-0'" in out
    assert "Running stage 'train@synthetic-classification-0'" not in out
    run(["dvc", "exp", "apply", "study-pool"], repo)
    metrics = json.loads((repo / "metrics/synthetic/triplet/seed0.json").read_text())
    assert metrics["triplet_pool"] == "study" and metrics["leak"]["test_in_pool"] == metrics["n_test"] == 9
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    changed = diff["metrics/synthetic/triplet/seed0.json"]
    assert changed["leak.test_in_pool"] == {"old": 0, "new": 9, "diff": 9}
    summary = (repo / "report/summary.md").read_text()
    assert "triplet is not clean" in summary and "9 test images were in the pool" in summary


def test_an_experiment_pushed_from_one_clone_is_pulled_and_applied_in_another_without_training(repo, queued):
    root, name = repo.parent, "study-pool"
    run(["dvc", "exp", "apply", name], repo)  # (as the previous test left it) to compare files below
    run(["git", "push", "-q", "origin", "main"], repo)
    pushed = run(["dvc", "exp", "push", "origin", name], repo).stdout
    assert f"Pushed experiment {name}" in pushed, pushed
    expected = experiments(repo)[name]["metrics"]

    b = root / "b"  # another machine: a clone of the shared git repository
    run(["git", "clone", "-q", "-b", "main", str(root / "origin.git"), str(b)], root)
    run(["git", "config", "user.name", "Test Runner"], b)
    run(["git", "config", "user.email", "tests@example.invalid"], b)
    run(["dvc", "exp", "pull", "origin", name], b)  # its git commit and, from the DVC remote, its outputs
    assert experiments(b)[name]["metrics"] == expected
    run(["dvc", "exp", "apply", name], b)
    pulled = run(["dvc", "pull"], b)
    assert "Running stage" not in pulled.stdout + pulled.stderr
    assert "Data and pipelines are up to date" in run(["dvc", "status"], b).stdout  # nothing to train or run
    # Every output, metrics included, came through the DVC remote, byte for byte.
    stored = {p.parent.name + p.name for p in (root / "storage/files/md5").rglob("*") if p.is_file()}
    for path in ("models/synthetic/triplet/seed0/model.safetensors", "metrics/synthetic/triplet/seed0.json",
                 "report/summary.json"):
        assert (b / path).read_bytes() == (repo / path).read_bytes(), path
        assert hashlib.md5((b / path).read_bytes()).hexdigest() in stored, path
