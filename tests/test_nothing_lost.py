"""End to end, as a newcomer would: after a recorded run, a typo, an invalid value, a stage that
fails at run time (no network) and Ctrl-C during training each leave the last good results
recoverable by one command, `dvc exp apply <name>`, byte for byte; typos and invalid values get
the project's one line, and stop before any stage deletes an output."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, default_sigint, env, project_copy, run, tiny_params

OUTPUTS = ("data", "models", "metrics", "plots", "report")


def state(repo: Path) -> dict[str, str]:
    """sha256 of params.yaml, dvc.lock and every file the pipeline wrote (caches aside)."""
    files = [p for d in OUTPUTS for p in (repo / d).rglob("*") if p.is_file()]
    files = [p for p in files if "cache" not in p.relative_to(repo).parts[:2]]
    files += [repo / "params.yaml", repo / "dvc.lock"]
    return {p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["dvc", *args], repo, check=check, timeout=900)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A project copy after `dvc repro`, recorded as experiment `base` (as `make demo` records `demo`)."""
    params = tiny_params(methods=["triplet"])  # a trained method to interrupt; another would add only time
    params["train"].update(epochs=24, cosine_t_max=24, resume_every_s=3600)  # long enough to interrupt under load
    repo = project_copy(tmp_path_factory.mktemp("lost") / "repo", params)
    dvc(repo, "repro")
    dvc(repo, "exp", "save", "--name", "base")  # as scripts/demo.py
    return repo


def restored(repo: Path, before: dict[str, str], left: str = "") -> None:
    """`dvc exp apply base` brings every file back byte for byte. What a failed run wrote for a dataset
    the base run does not have (`left`: its notes in data/sources) stays, as DVC leaves stale outputs."""
    dvc(repo, "exp", "apply", "base")
    after = state(repo)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert [k for k in changed if not (left and k.startswith(left))] == [], f"not restored byte for byte: {changed}"
    assert all(k not in before for k in changed)


def test_metrics_show_right_after_a_run_lists_every_run_and_nothing_else(repo):
    shown = dvc(repo, "metrics", "show")
    said = shown.stdout + shown.stderr
    assert "failed to load" not in said.lower() and "WARNING" not in said, said
    rows = [line.split()[0] for line in shown.stdout.strip().splitlines()[1:]]
    assert rows == ["metrics/synthetic/triplet/seed0.json"]


def test_typos_and_invalid_values_get_the_projects_line_and_delete_nothing(repo):
    before = state(repo)
    for setting, line in (
        ("datasets=[synthetc]", "datasets must be names from: defungi, digits, pets, synthetic, or a dataset of your "
                                "own defined as sources.<name>: {folder: PATH} or {csv: FILE, root: FOLDER}, "
                                "got 'synthetc'"),
        ("methods=[pretrained,clasification]", "methods must be names from: classification, normsoftmax"),
        ("shots=-1", "shots must be an integer >= 0"),
        ("shots=7", "shots must be at most 6 for synthetic"),
    ):
        result = dvc(repo, "exp", "run", "-S", setting, check=False)
        said = result.stdout + result.stderr
        assert result.returncode != 0
        assert line in said, said
        assert "missing from" not in said and "Running stage 'split" not in said, said
        assert said.count("Running stage") == 1  # `check` alone ran
        restored(repo, before)  # the failed setting stays in params.yaml until then, as DVC leaves it


def test_a_stage_failing_at_run_time_loses_nothing(repo):
    """As the study offline: a download that cannot connect."""
    before = state(repo)
    result = dvc(repo, "exp", "run", "-S", "datasets=[pets]", "-S", "split.source=generated",
                 "-S", "sources.pets.images.url=http://127.0.0.1:9/images.tar.gz", check=False)
    assert result.returncode != 0 and "cannot reach http://127.0.0.1:9/images.tar.gz" in result.stderr
    # DVC cleared the last good run's outputs (its stages are not in the new pipeline) before the
    # download failed: the run's metrics and models are gone, so the restore below has them to bring back.
    after = state(repo)
    results = [k for k in before if k.startswith(("metrics/synthetic/", "models/synthetic/"))]
    assert results and [k for k in results if k in after] == [], sorted(after)
    restored(repo, before, left="data/sources/pets/")


def test_ctrl_c_during_training_keeps_the_epoch_and_loses_nothing(repo):
    before = state(repo)
    proc = subprocess.Popen(["dvc", "exp", "run", "-S", "triplet.margin=0.5"], cwd=repo, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=default_sigint)
    curve = repo / "plots/train/synthetic/triplet/seed0.csv"
    deadline = time.monotonic() + 600
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the old run's curve is gone once its stage starts again
            lines.append(line)
            if "Running stage 'train@synthetic-triplet-0'" in line:
                break
        else:
            pytest.fail("dvc exp run ended before training:\n" + "".join(lines))
        while not curve.is_file() or len(curve.read_text().strip().splitlines()) < 2:  # epoch 1 finished
            assert proc.poll() is None, "".join(lines) + proc.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        out = "".join(lines) + proc.communicate(timeout=600)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out
    assert "interrupted: epochs 1-" in out and "running the same `dvc exp run` again resumes from epoch" in out, out
    assert (repo / "data/cache/resume/synthetic/triplet/seed0/resume.pt").is_file()
    restored(repo, before)


def test_demo_args_are_checked_before_anything_is_touched(tmp_path):
    repo = project_copy(tmp_path / "repo", tiny_params())
    (repo / "scripts").mkdir()
    (repo / "scripts/demo.py").write_bytes((ROOT / "scripts/demo.py").read_bytes())
    before = (repo / "params.yaml").read_bytes()
    for args, line in (
        (["-S", "train.epoch=3"], "unknown key train.epoch; accepted: device, epochs,"),
        (["-S", "datasets=[digitz]"], "datasets must be names from: defungi, digits, pets, synthetic"),
        (["-S", "shots=100000"], "shots must be at most 86 for digits"),  # tiny_params hold out 25% + 25%
    ):
        result = run(["python", "scripts/demo.py", *args], repo, check=False)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and line in result.stderr, result.stderr
        assert (repo / "params.yaml").read_bytes() == before
        assert not (repo / "dvc.lock").exists()


def test_demo_params_keep_the_committed_file_and_change_only_the_overridden_values():
    import yaml

    from scripts.demo import OVERRIDES, demo_params_text, experiment_name

    committed = (ROOT / "params.yaml").read_text()
    text, values = demo_params_text(committed, [*OVERRIDES, "shots=15"])
    assert yaml.safe_load(text) == values
    assert values["datasets"] == ["digits"] and values["shots"] == 15 and values["train"]["epochs"] == 12
    changed = [(a, b) for a, b in zip(committed.splitlines(), text.splitlines(), strict=True) if a != b]
    assert len(changed) == len(OVERRIDES) + 1  # one line per setting; every comment and other line as it was
    assert experiment_name([]) == "demo" and experiment_name(["shots=15", "train.lr=0.01"]) == "demo-shots15-lr0.01"
    assert json.loads(json.dumps(values)) == values
