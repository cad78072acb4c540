"""End to end, scaling out with DVC's own tools (docs/scaling.md), in a temporary git repository, on
generated data, with a tiny model on the CPU: two experiments queued and run by two workers at once
(`dvc queue start -j 2`) after one `dvc repro` put the shared stages in the cache, then one of them
shared with a second clone through a bare git repository and a local-folder DVC remote (as S3 would
be), which takes it without training anything.

Its own repository (one method, triplet), so that pytest-xdist runs it beside tests/test_pipeline_e2e.py.
The study's pool (`triplet.pool: study`, one of the two runs) also shows its leak in `dvc exp diff` and the report.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import env, project_copy, run, tiny_params

QUEUED = {"margin": "triplet.margin=0.5", "study-pool": "triplet.pool=study"}  # experiment name -> its -S
SHARED = ("download@synthetic", "decode@synthetic", "weights", "split@synthetic")  # no queued run changes these
RERUN = {"check", "tune@synthetic-triplet", *(f"{s}@synthetic-triplet-0" for s in ("train", "embed", "evaluate", "umap",
                                                                                   "pictures")), "report"}
METRICS = "metrics/synthetic/triplet/seed0.json"


def ran(out: str) -> set[str]:
    """The stages a dvc command ran, from its output."""
    names = re.findall(r"Running stage '([^']+)'", out)
    assert len(names) == len(set(names)), f"a stage ran twice: {names}"
    return set(names)


def experiments(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json`: experiment name -> {"params": ..., "metrics": {path: ...}}."""
    out = {}
    for commit in json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout):
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                metrics = {path: m.get("data") for path, m in (data.get("metrics") or {}).items()}
                out[rev["name"]] = {"params": data["params"]["params.yaml"]["data"], "metrics": metrics}
    return out


def without_lists(metrics: dict) -> dict:
    """A metrics file as `dvc exp show` lists it: numbers and strings (it leaves out lists, the CIs)."""
    return {k: without_lists(v) if isinstance(v, dict) else v for k, v in metrics.items() if not isinstance(v, list)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A project with a DVC remote and a git remote, whose shared stages ran and are committed."""
    root = tmp_path_factory.mktemp("scaling")
    repo = project_copy(root / "project", tiny_params(methods=["triplet"]))
    # The DVC remote is set in the commit experiments branch from: an experiment carries its commit's
    # .dvc/config (one made before would take the remote away when applied elsewhere).
    run(["dvc", "remote", "add", "-d", "storage", str(root / "storage")], repo)
    run(["git", "init", "-q", "--bare", "-b", "main", str(root / "origin.git")], root)
    run(["git", "remote", "add", "origin", str(root / "origin.git")], repo)
    # The stages no queued run changes, once: what each worker would otherwise do again at the same time.
    assert ran(run(["dvc", "repro", *SHARED], repo).stdout) == {"check", "source@synthetic", "annotations", *SHARED}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "DVC remote, shared stages"], repo)  # dvc.lock committed: queued runs reuse it
    return repo


@pytest.fixture(scope="module")
def queued(repo):
    """The two experiments of QUEUED, run by two workers at once; `dvc queue status` once done."""
    for name, change in QUEUED.items():
        said = run(["dvc", "exp", "run", "--queue", "-n", name, "-S", change], repo).stdout
        assert f"Queued experiment '{name}'" in said, said
    # The workers run detached: their output goes to DVC's queue logs, not to this pipe.
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=repo, env=env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    # Wait cheaply: each `dvc queue status` costs a second of CPU, which the workers want. Once both
    # runs have started, `dvc queue logs -f` follows each to its end, then the results are collected.
    deadline = time.monotonic() + 900
    for waiting, names in (("Queued", list(QUEUED)), ("Running", [])):
        while waiting in (status := run(["dvc", "queue", "status"], repo).stdout):
            assert time.monotonic() < deadline, f"the queue did not finish in 15 minutes:\n{status}"
            time.sleep(1)
        for name in names:
            run(["dvc", "queue", "logs", "-f", name], repo, timeout=900)
    return status


def test_a_queued_pair_runs_on_two_workers_reusing_the_shared_stages_and_dvc_shows_both(repo, queued):
    assert queued.count("Success") == len(QUEUED) and all(name in queued for name in QUEUED), queued
    for name in QUEUED:
        log = run(["dvc", "queue", "logs", name], repo).stdout
        # A triplet param: that run and the report, nothing else; and the source stage, whose links are not
        # in git (they may point at your images): a fresh copy makes them again, the same, so nothing follows.
        assert ran(log) == RERUN | {"source@synthetic"}, (name, log)
        for shared in SHARED:  # from the committed dvc.lock and the cache: not run again
            assert f"Stage '{shared}' didn't change, skipping" in log, (name, shared)

    exps = experiments(repo)
    assert set(exps) >= set(QUEUED)
    margin, pool = exps["margin"], exps["study-pool"]
    committed = yaml.safe_load(run(["git", "show", "HEAD:params.yaml"], repo).stdout)
    for exp, key, value in ((margin, "margin", 0.5), (pool, "pool", "study")):  # its one change, nothing else
        assert committed["triplet"][key] != value
        assert exp["params"] == {**committed, "triplet": {**committed["triplet"], key: value}}
    # Each run's own metrics: the study's pool puts all 9 test images in the triplets' pool, the other none.
    for exp, leaked in ((margin, 0), (pool, 9)):
        m = exp["metrics"][METRICS]
        assert (m["n_test"], m["leak"]["test_in_pool"]) == (9, leaked), m
        assert 0 <= m["kmeans_acc"] <= 1
    # What `dvc exp show` lists is what the run wrote: applied, the workspace's files say the same.
    run(["dvc", "exp", "apply", "margin"], repo)
    assert without_lists(json.loads((repo / METRICS).read_text())) == margin["metrics"][METRICS]
    summary = json.loads((repo / "report/summary.json").read_text())["synthetic"]["triplet"]
    assert summary["kmeans_acc"] == margin["metrics"][METRICS]["kmeans_acc"]


def test_an_experiment_pushed_from_one_clone_is_pulled_and_applied_in_another_without_training(repo, queued):
    root, name = repo.parent, "study-pool"
    run(["dvc", "exp", "apply", name], repo)  # to compare A's files with B's below
    # `triplet.pool: study` (the study's sampling, test images in the pool): the leak is counted,
    # diffed against the clean run and reported.
    diff = json.loads(run(["dvc", "exp", "diff", "margin", name, "--json"], repo).stdout)["metrics"]
    assert diff[METRICS]["leak.test_in_pool"] == {"old": 0, "new": 9, "diff": 9}
    summary = (repo / "report/summary.md").read_text()
    assert "triplet is not clean" in summary and "9 test images were in the pool" in summary
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
    assert ran(pulled.stdout + pulled.stderr) == set()
    # The clone makes its own source links (not in git, not cached); nothing else runs: nothing to train.
    assert ran(run(["dvc", "repro"], b).stdout) == {"source@synthetic"}
    assert "Data and pipelines are up to date" in run(["dvc", "status"], b).stdout
    assert without_lists(json.loads((b / METRICS).read_text())) == expected[METRICS]
    # Every output, metrics included, came through the DVC remote, byte for byte.
    stored = {p.parent.name + p.name for p in (root / "storage/files/md5").rglob("*") if p.is_file()}
    for path in ("models/synthetic/triplet/seed0/model.safetensors", METRICS, "report/summary.json"):
        assert (b / path).read_bytes() == (repo / path).read_bytes(), path
        assert hashlib.md5((b / path).read_bytes()).hexdigest() in stored, path
