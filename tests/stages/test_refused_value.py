"""A value the check refuses never sticks: with the real `dvc exp run -S`, the refusal names the one
command that puts back the last params that passed, and that command keeps the refused file.
Also what DVC allows for a key typo: it refuses `-S train.epoch=3` itself (before the project runs),
and `-S +train.epoch=3` gets the project's line with the accepted keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from stages.lib import model_names
from tests.helpers import project_copy, run, tiny_params

HINT = "params.yaml still holds it: `python -m stages.check --restore` puts back the params of the last run that passed"


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["dvc", *args], repo, check=check, timeout=600)


def values(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def test_a_refused_value_is_undone_by_the_one_command_it_names(tmp_path):
    repo = project_copy(tmp_path / "repo", tiny_params())
    model_names.registry(repo / "data/cache/timm")  # what the first check writes (timm's registry), once
    dvc(repo, "repro", "check")
    run(["git", "add", "dvc.lock"], repo)
    run(["git", "commit", "-q", "-m", "checked"], repo)
    good = values(repo)

    refused = dvc(repo, "exp", "run", "-S", "train.device=cpuu", "check", check=False)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    line = next(x for x in out.splitlines() if x.startswith("error: "))
    assert line.startswith("error: params.yaml: train.device must be one of: auto, cpu, cuda, cuda:N (N a GPU index), "
                           "got 'cpuu'; " + HINT), line
    assert values(repo)["train"]["device"] == "cpuu"  # DVC wrote it; the check does not touch the file

    said = run(["python", "-m", "stages.check", "--restore"], repo)
    assert "params.yaml: restored the params of the last run that passed the check (dvc.lock); the refused file is " \
           "kept as data/params.yaml.refused" in said.stderr + said.stdout
    assert values(repo) == good
    assert yaml.safe_load((repo / "data/params.yaml.refused").read_text())["train"]["device"] == "cpuu"

    dvc(repo, "exp", "run", "-S", "train.epochs=3", "check")  # the next run is not blocked
    assert values(repo)["train"]["epochs"] == 3

    # a key typo: DVC refuses it itself, before any stage, and params.yaml is as it was
    before = (repo / "params.yaml").read_bytes()
    typo = dvc(repo, "exp", "run", "-S", "train.epoch=3", "check", check=False)
    assert typo.returncode != 0 and "+train.epoch=3" in typo.stdout + typo.stderr
    assert (repo / "params.yaml").read_bytes() == before
    # DVC's suggestion gets the project's line with the accepted keys, and the way back
    added = dvc(repo, "exp", "run", "-S", "+train.epoch=3", "check", check=False)
    line = next(x for x in (added.stdout + added.stderr).splitlines() if x.startswith("error: "))
    assert line.startswith("error: params.yaml: unknown key train.epoch; accepted: device, epochs, optimizer,"), line
    assert line.endswith(HINT + " (and keeps this file as data/params.yaml.refused)"), line
    run(["python", "-m", "stages.check", "--restore"], repo)
    assert values(repo) == {**good, "train": {**good["train"], "epochs": 3}}  # the last run that passed: epochs 3
