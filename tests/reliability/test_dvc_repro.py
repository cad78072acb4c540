"""The whole pipeline through DVC, twice: same params and seed on the CPU give byte-identical
outputs at every stage, so a second `dvc repro` runs nothing and `dvc repro -f` leaves `dvc.lock`
unchanged; a second `dvc repro` started while one runs fails on DVC's lock, harming nothing; and
a `dvc repro` killed mid-training continues from its last complete epoch to the same bytes.

The tests share one repository and run in order (each changes params.yaml a little further).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import env, project_copy, run, tiny_params

OUTPUT_DIRS = ("data", "models", "metrics", "plots", "report")


def digests(repo: Path) -> dict[str, str]:
    """sha256 of every file the pipeline wrote (the DVC outputs and the metrics and plots)."""
    files = [p for d in OUTPUT_DIRS for p in (repo / d).rglob("*") if p.is_file()]
    return {
        p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(files) if "cache" not in p.relative_to(repo).parts[:2]
    }


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["dvc", *args], repo, check=check, timeout=900)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh copy of the project (synthetic data, a tiny model, 2 epochs) after one `dvc repro`.
    One trained method, so that every kind of stage runs: the other methods' stages are the same
    code (six stage processes fewer, twice), and classification's training reruns to the same
    bytes in tests/reliability/test_resume.py."""
    repo = project_copy(tmp_path_factory.mktemp("dvc") / "repo", tiny_params(methods=["triplet"]))
    dvc(repo, "repro")
    return repo


def test_reruns_are_byte_identical_and_dvc_sees_nothing_to_do(repo):
    lock = (repo / "dvc.lock").read_bytes()
    first = digests(repo)
    stages = yaml.safe_load(lock)["stages"]
    assert {"check", "split@synthetic", "train@synthetic-triplet-0", "umap@synthetic-triplet-0",
            "report"} <= set(stages)
    assert any(p.startswith("plots/umap/") for p in first) and "metrics/synthetic/triplet/seed0.json" in first

    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout, again.stdout  # nothing changed, nothing runs
    assert (repo / "dvc.lock").read_bytes() == lock

    forced = dvc(repo, "repro", "-f")
    assert forced.stdout.count("Running stage") == len(stages), forced.stdout  # every stage ran again...
    second = digests(repo)
    changed = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
    assert changed == [], f"outputs differ between identical runs: {changed}"
    assert (repo / "dvc.lock").read_bytes() == lock  # ...and wrote the very same bytes
    assert "up to date" in dvc(repo, "status").stdout
    assert not (repo / "data/cache/resume").exists() or not any((repo / "data/cache/resume").rglob("*.pt"))


def test_a_second_repro_while_one_runs_fails_on_the_lock_and_harms_nothing(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["triplet"]["margin"] = 0.5  # so train@synthetic-triplet-0 runs again
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage = "train@synthetic-triplet-0"  # (and what follows it would run too; the lock is the same)
    first = subprocess.Popen(["dvc", "repro", stage], cwd=repo, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        assert first.stdout is not None
        for line in first.stdout:  # wait until it is training: the stage holds DVC's locks on its files
            lines.append(line)
            if f"Running stage '{stage}'" in line:
                break
        else:
            pytest.fail("the first dvc repro ended before training:\n" + "".join(lines))
        second = dvc(repo, "repro", check=False)
        said = second.stdout + second.stderr
        assert second.returncode != 0, said
        assert "Running stage" not in said, said  # it ran nothing
        # DVC 3 refuses with its repository lock or the read/write lock of the files in use.
        assert "Unable to acquire lock" in said or ("is busy, it is being blocked by" in said), said
        rest, _ = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, "".join(lines) + rest
    status = dvc(repo, "status", "--with-deps", stage)
    assert "up to date" in status.stdout, status.stdout  # its outputs and all before it match dvc.lock
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"][stage]["params"]["params.yaml"]["triplet"]["margin"] == 0.5


def test_dvc_repro_killed_mid_training_resumes_from_the_last_complete_epoch(repo):
    """SIGKILL to `dvc repro` and its stage (a crash, an OOM kill); the next `dvc repro` continues
    from the last complete epoch. (That the result is byte-identical to an uninterrupted run's is
    shown stage by stage in test_resume.py; here: DVC keeps the checkpoint and its locks recover.)"""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 4  # long enough to be killed after the first epoch's checkpoint
    params["train"]["cosine_t_max"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage = "train@synthetic-triplet-0"
    checkpoint = repo / "data/cache/resume/synthetic/triplet/seed0/resume.pt"
    proc = subprocess.Popen(["dvc", "repro", stage], cwd=repo, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not checkpoint.exists():
            assert proc.poll() is None, f"dvc repro ended before the first checkpoint:\n{proc.communicate()[0]}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)  # dvc and the training process under it
        proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (repo / "models/synthetic/triplet/seed0").exists()  # DVC removed the old output; no new one yet

    resumed = dvc(repo, "repro", stage)
    said = resumed.stdout + resumed.stderr
    assert "continuing at epoch" in said and "epoch 1:" not in said, said
    assert not checkpoint.exists()
    assert "up to date" in dvc(repo, "status", stage).stdout
    assert yaml.safe_load((repo / "models/synthetic/triplet/seed0/meta.json").read_text())["epochs"] == 4
