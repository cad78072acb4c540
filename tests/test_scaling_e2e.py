"""End to end, many runs and many machines with DVC's own tools, on the digits demo configuration
(tiny: one epoch, 16 px digits, timm's test ConvNeXt on the CPU):

- the experiment queue: a grid of two `shots` values queued with `dvc exp run --queue`, run by two
  workers (`dvc queue start -j 2`); both are listed by `dvc exp show` with their metrics, and the
  stages they share (download, decode, weights) ran once, before, and were reused from the cache;
- two clones standing in for two machines: a bare git repository is the shared git remote and a
  local folder the DVC remote (as S3 would be). Clone A pushes a queued experiment with
  `dvc exp push`; clone B pulls it, sees its metrics, applies it and `dvc pull`s its outputs
  without training anything (`dvc status` clean).

Outputs declared `cache: false` (metrics JSON, training curves, the report) travel in the
experiment's git commit, not in the DVC remote: B has them as soon as it pulls the experiment.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import default_params, env, project_copy, run

SHOTS = (2, 3)
METRICS = "metrics/digits/classification/seed0.json"
MODEL = "models/digits/classification/seed0/model.safetensors"


def demo_params() -> dict:
    """scripts/demo.py's digits configuration, cut to one method and one epoch on 16 px digits."""
    p = default_params()
    p["datasets"] = ["digits"]
    p["split"]["source"] = "generated"
    p["methods"] = ["classification"]
    p["model"] = {"name": "test_convnext", "pretrained": False, "image_size": 32}
    p["sources"]["digits"]["image_size"] = 16
    p["train"].update(device="cpu", epochs=1, lr=0.002, warmup_epochs=0, cosine_t_max=1, eta_min=1e-5,
                      precision="fp32")
    p["classification"]["batch_size"] = 64
    p["evaluate"].update(kmeans_n_init=1, kmeans_repeats=1)
    return p


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo).stdout


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run(["dvc", *args], repo, timeout=900)


def experiments(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json`: experiment name -> {"params": ..., "metrics": ...} of the baseline's experiments."""
    out = {}
    for commit in json.loads(dvc(repo, "exp", "show", "--json").stdout):
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                out[rev["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": (data.get("metrics") or {}).get(METRICS, {}).get("data"),
                }
    return out


def exp_ref(repo: Path, name: str) -> str:
    """The path under refs/exps/ of experiment `name`."""
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/exps/").split()
    return next(r for r in refs if r.endswith(f"/{name}")).removeprefix("refs/exps/")


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Clone A with its remotes (bare git repository, DVC folder remote), the shared stages run and
    pushed, and the grid of two experiments queued and run by two workers."""
    root = tmp_path_factory.mktemp("scaling")
    run(["git", "init", "-q", "--bare", "-b", "main", str(root / "origin.git")], root)
    a = project_copy(root / "a", demo_params())
    dvc(a, "remote", "add", "-d", "storage", str(root / "storage"))  # before any experiment: they carry it
    git(a, "remote", "add", "origin", str(root / "origin.git"))
    dvc(a, "repro", "download@digits", "annotations", "decode@digits", "weights")
    git(a, "add", "-A")
    git(a, "commit", "-q", "-m", "remote; shared stages")
    dvc(a, "push")
    git(a, "push", "-q", "origin", "main")

    queued = dvc(a, "exp", "run", "--queue", "-S", "shots=" + ",".join(map(str, SHOTS))).stdout
    assert queued.count("Queued experiment") == len(SHOTS), queued
    # The workers run detached: their output goes to DVC's queue logs, not to this pipe.
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=a, env=env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    deadline = time.monotonic() + 1200
    while True:
        status = dvc(a, "queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, f"the queue did not finish in 20 minutes:\n{status}"
        time.sleep(3)
    return {"root": root, "a": a, "status": status}


def test_a_queued_grid_runs_on_two_workers_and_shares_the_common_stages(machines):
    a, status = machines["a"], machines["status"]
    exps = experiments(a)
    assert len(exps) == len(SHOTS), exps
    for name in exps:
        assert f"{name}" in status and status.count("Success") == len(SHOTS), status
    assert sorted(e["params"]["shots"] for e in exps.values()) == list(SHOTS)
    for name, exp in exps.items():
        m = exp["metrics"]
        assert m is not None and m["n_classes"] == 10 and 0 < m["kmeans_acc"] <= 1, (name, m)
        log = dvc(a, "queue", "logs", name).stdout
        assert "Running stage 'train@digits-classification-0'" in log and "Running stage 'split@digits'" in log
        for shared in ("download@digits", "decode@digits", "weights"):
            assert f"Stage '{shared}' didn't change, skipping" in log, (shared, log)
            assert f"Running stage '{shared}'" not in log, (shared, log)
    first, second = (exps[n]["metrics"] for n in sorted(exps, key=lambda n: exps[n]["params"]["shots"]))
    assert first != second  # two different runs, not one result shown twice


def test_an_experiment_pushed_from_one_clone_is_pulled_and_applied_in_another_without_training(machines):
    root, a = machines["root"], machines["a"]
    exps = experiments(a)
    name = next(n for n, e in exps.items() if e["params"]["shots"] == SHOTS[0])
    pushed = dvc(a, "exp", "push", "origin", name).stdout
    assert f"Pushed experiment {name}" in pushed, pushed

    b = root / "b"
    run(["git", "clone", "-q", "-b", "main", str(root / "origin.git"), str(b)], root)
    git(b, "config", "user.name", "Test Runner")
    git(b, "config", "user.email", "tests@example.invalid")
    dvc(b, "exp", "pull", "origin", name)  # its git commit and, from the DVC remote, its cached outputs
    assert experiments(b)[name]["metrics"] == exps[name]["metrics"]

    dvc(b, "exp", "apply", name)
    pulled = dvc(b, "pull")
    assert "Running stage" not in pulled.stdout + pulled.stderr
    assert (b / MODEL).is_file() and (b / "data/embeddings/digits/classification/seed0.npz").is_file()
    # cache: false outputs (metrics, curves, report) travel in the experiment's git commit, not in the
    # DVC remote; the cached ones (the model) in the DVC remote
    stored = {p.parent.name + p.name for p in (root / "storage/files/md5").rglob("*") if p.is_file()}
    for path in (METRICS, "plots/train/digits/classification/seed0.csv", "report/summary.md"):
        assert hashlib.md5((b / path).read_bytes()).hexdigest() not in stored, path
        assert git(b, "ls-tree", "-r", "--name-only", f"refs/exps/{exp_ref(b, name)}", path).strip() == path
    assert hashlib.md5((b / MODEL).read_bytes()).hexdigest() in stored
    assert "Data and pipelines are up to date" in dvc(b, "status").stdout  # nothing to train or run
