"""End to end: the real `dvc repro`, `dvc exp run -S ...`, `dvc metrics diff` and `dvc exp show` in a
temporary git repository, on generated data, with a tiny model on the CPU.

The tests share one repository: the first run, committed (a module fixture), then from there a
k-shot experiment and the study's triplet sampling, each test starting from the committed first
run (`at_first_run`), so that any one of them runs alone (`-k`) and in any order. Each checks
exactly which stages DVC ran (so a missing dependency or one too many fails) and that the numbers
agree from stage to stage: the predictions the clustering wrote, the metrics files, the report,
and what DVC's own commands show.
What each stage computes is tested at the stage level (tests/stages/); what runs here is the wiring.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment

from tests.helpers import project_copy, run, tiny_params

METHODS = ("classification", "triplet")
PER_RUN = ("train", "embed", "evaluate", "umap", "pictures")  # the stages of one method's run
DATA = ("source@synthetic", "download@synthetic", "annotations", "decode@synthetic", "weights")  # before split


def chain(method: str) -> set[str]:
    return {f"{stage}@synthetic-{method}-0" for stage in PER_RUN}


TUNE = {f"tune@synthetic-{m}" for m in METHODS}  # tune.trials 0: each writes the given values (no search)
EVERY_STAGE = {"check", *DATA, "split@synthetic", *TUNE, *chain("classification"), *chain("triplet"), "report"}


def ran(out: str) -> set[str]:
    """The stages a dvc command ran, from its output."""
    names = re.findall(r"Running stage '([^']+)'", out)
    assert len(names) == len(set(names)), f"a stage ran twice: {names}"
    return set(names)


def metrics(repo: Path, method: str) -> dict:
    return json.loads((repo / f"metrics/synthetic/{method}/seed0.json").read_text())


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def dvc_json(repo: Path, *args: str):
    return json.loads(run(["dvc", *args, "--json"], repo).stdout)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return project_copy(tmp_path_factory.mktemp("e2e") / "project", tiny_params(methods=list(METHODS)))


@pytest.fixture(scope="module")
def first(repo):
    """The first `dvc repro`, committed: what it ran, and each method's metrics."""
    out = run(["dvc", "repro"], repo).stdout
    scores = {m: metrics(repo, m) for m in METHODS}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "first run"], repo)
    return ran(out), scores


@pytest.fixture
def at_first_run(repo, first):
    """The workspace as the committed first run left it (an earlier test's experiment undone:
    params.yaml and dvc.lock from git, the outputs from DVC's cache); returns `first`."""
    run(["git", "checkout", "--", "params.yaml", "dvc.lock"], repo)
    run(["dvc", "checkout", "--force"], repo)
    assert ran(run(["dvc", "repro"], repo).stdout) == set()  # the workspace is the first run's
    return first


def test_the_first_repro_runs_every_stage_once_and_the_numbers_agree_from_stage_to_stage(repo, first):
    stages, scores = first
    assert stages == EVERY_STAGE
    test_rows = rows(repo / "data/splits/synthetic/test.csv")
    summary = json.loads((repo / "report/summary.json").read_text())["synthetic"]
    for method in METHODS:
        m = scores[method]
        assert (m["n_test"], m["n_classes"]) == (len(test_rows), 3) == (9, 3)
        # The clustering's predictions cover exactly the test split, and their one-to-one matching of
        # clusters to classes gives the accuracy in the metrics file.
        predicted = rows(repo / f"data/predictions/synthetic/{method}/seed0.csv")
        assert [(p["row"], p["label"]) for p in predicted] == [(t["row"], t["label"]) for t in test_rows]
        labels = np.array([int(p["label"]) for p in predicted])
        clusters = np.array([int(p["cluster"]) for p in predicted])
        table = np.zeros((3, clusters.max() + 1))
        np.add.at(table, (labels, clusters), 1)
        matched = table[linear_sum_assignment(-table)].sum() / len(labels)
        assert m["kmeans_acc"] == pytest.approx(matched, abs=1e-6)
        assert m["kmeans_acc"] == pytest.approx(np.mean([int(p["correct"]) for p in predicted]), abs=1e-6)
        assert summary[method]["kmeans_acc"] == m["kmeans_acc"]  # one seed: the mean is that run's value
        assert (summary[method]["shots"], summary[method]["seeds"]) == (0, 1)
    difference = summary["comparisons"]["triplet_vs_classification"]["per_seed"]["0"]["difference"]
    assert difference == pytest.approx(scores["triplet"]["kmeans_acc"] - scores["classification"]["kmeans_acc"],
                                       abs=2e-6)
    pictures = [f"plots/{kind}/synthetic_{m}_seed0.png" for kind in ("umap", "retrieval", "confusion") for m in METHODS]
    pictures += [f"plots/report/{name}" for name in ("summary.png", "umap_grid.png", "curves_synthetic.png")]
    for picture in pictures:
        with Image.open(repo / picture) as image:
            assert image.format == "PNG" and min(image.size) >= 200, picture
            assert np.asarray(image.convert("L")).std() > 5, f"{picture} is blank"

    assert ran(run(["dvc", "repro"], repo).stdout) == set()  # nothing changed: nothing runs
    shown = dvc_json(repo, "metrics", "show")
    files = next(iter(shown.values()))["data"]  # DVC 3: {"": {"data": {file: {"data": {...}}}}}
    assert {f: v["data"]["kmeans_acc"] for f, v in files.items()} == {
        f"metrics/synthetic/{m}/seed0.json": scores[m]["kmeans_acc"] for m in METHODS}


def test_a_k_shot_experiment_reruns_from_the_split_and_dvc_compares_it_with_the_first_run(repo, at_first_run):
    _, before = at_first_run
    test_csv, val_csv = ((repo / "data/splits/synthetic" / name).read_bytes() for name in ("test.csv", "val.csv"))

    out = run(["dvc", "exp", "run", "-n", "two-shot", "-S", "shots=2"], repo).stdout
    assert ran(out) == {"check", "split@synthetic", *TUNE, *chain("classification"), *chain("triplet"), "report"}
    train = rows(repo / "data/splits/synthetic/train.csv")
    assert sorted(r["label"] for r in train) == ["0", "0", "1", "1", "2", "2"]  # 2 shots x 3 classes
    assert (repo / "data/splits/synthetic/test.csv").read_bytes() == test_csv  # the same test set
    assert (repo / "data/splits/synthetic/val.csv").read_bytes() == val_csv
    after = {m: metrics(repo, m) for m in METHODS}
    assert json.loads((repo / "report/summary.json").read_text())["synthetic"]["triplet"]["shots"] == 2

    diff = dvc_json(repo, "metrics", "diff", "--all")
    assert set(diff) == {f"metrics/synthetic/{m}/seed0.json" for m in METHODS}
    for m in METHODS:
        change = diff[f"metrics/synthetic/{m}/seed0.json"]["kmeans_acc"]
        assert (change["old"], change["new"]) == (before[m]["kmeans_acc"], after[m]["kmeans_acc"])
        assert change["diff"] == pytest.approx(after[m]["kmeans_acc"] - before[m]["kmeans_acc"], abs=1e-9)

    shown = run(["dvc", "exp", "show", "--csv", "--drop", ".*", "--keep",
                 r"Experiment|shots|.*triplet/seed0\.json:kmeans_acc$"], repo).stdout
    table = {(r["Experiment"], r["shots"], float(r["metrics/synthetic/triplet/seed0.json:kmeans_acc"]))
             for r in csv.DictReader(io.StringIO(shown)) if r["Experiment"] in ("", "two-shot")}
    assert ("two-shot", "2", after["triplet"]["kmeans_acc"]) in table
    assert ("", "0", before["triplet"]["kmeans_acc"]) in table  # the committed first run


def test_one_method_param_reruns_that_method_alone_and_the_studys_leak_shows_in_the_diff(repo, at_first_run):
    """`triplet.pool: study` (the study's sampling, test images in the pool) is a triplet param: only
    triplet's run and the report run again, and the leak is counted, diffed and reported."""
    out = run(["dvc", "exp", "run", "-S", "triplet.pool=study"], repo).stdout
    assert ran(out) == {"check", "tune@synthetic-triplet", *chain("triplet"), "report"}
    m = metrics(repo, "triplet")
    assert m["triplet_pool"] == "study" and m["leak"]["test_in_pool"] == m["n_test"] == 9
    diff = dvc_json(repo, "metrics", "diff")
    assert diff["metrics/synthetic/triplet/seed0.json"]["leak.test_in_pool"] == {"old": 0, "new": 9, "diff": 9}
    summary = (repo / "report/summary.md").read_text()
    assert "triplet is not clean" in summary and "9 test images were in the pool" in summary
