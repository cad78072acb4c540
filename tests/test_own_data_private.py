"""Your images stay yours: with `sources.<name>.folder`, a real `dvc exp run` puts no image bytes into
git (no commit, experiment ref, stash or stray object), `dvc exp push` to a git remote sends none, and
the images are still found after `dvc exp apply` and in a workspace that has lost its links."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import project_copy, run, tiny_params, write_params

NAME = "signs"


def write_photos(folder) -> list:
    """Three classes of six small JPEGs and PNGs; returns their paths."""
    rng = np.random.default_rng(0)
    paths = []
    for cls in ("stop", "yield", "speed"):
        (folder / cls).mkdir(parents=True)
        for i in range(6):
            path = folder / cls / f"{i}.{'jpg' if i % 2 else 'png'}"
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths


def git_objects(repo) -> set[str]:
    """Every object in the repository's object store, reachable or not (loose and packed)."""
    out = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def blob_ids(paths, repo) -> set[str]:
    """The git blob id each file would have if it were committed."""
    out = subprocess.run(["git", "hash-object", "--stdin-paths"], cwd=repo, input="\n".join(map(str, paths)),
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A project whose only dataset is a folder of your own, after one `dvc exp run -n signs`."""
    base = tmp_path_factory.mktemp("private")
    photos = write_photos(base / "photos")
    params = tiny_params(datasets=[NAME], methods=["pretrained"])
    params["sources"][NAME] = {"folder": str(base / "photos")}
    repo = project_copy(base / "project", params)
    first = run(["dvc", "exp", "run", "-n", NAME], repo)
    # The first run of a new dataset: none of its stages is in dvc.lock yet, and DVC's checkout
    # would warn once per output that it has no hash to restore (the Makefile's dvc_quiet.pth).
    assert "No file hash info" not in first.stdout + first.stderr
    assert ran(first.stdout) >= {f"source@{NAME}", f"split@{NAME}"}
    return repo, photos


def test_an_experiment_puts_no_image_into_git(experiment):
    repo, photos = experiment
    assert (repo / f"data/sources/{NAME}/images").is_symlink()  # the stage linked the folder...
    images = blob_ids(photos, repo)
    assert len(images) == len(photos)
    assert not images & git_objects(repo)  # ...and no commit, ref, stash or stray object holds a photo
    refs = run(["git", "for-each-ref", "--format=%(refname)"], repo).stdout.split()
    assert any(ref.startswith("refs/exps/") for ref in refs), refs  # the experiment was committed
    for ref in [*refs, "HEAD"]:
        files = run(["git", "ls-tree", "-r", "--name-only", ref], repo).stdout.split()
        assert not [f for f in files if f.startswith("data/")], (ref, files)
    assert run(["git", "status", "--porcelain", "--ignored=no"], repo).stdout.count("data/") == 0


def test_exp_push_to_a_git_remote_sends_no_image(experiment, tmp_path):
    repo, photos = experiment
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    run(["dvc", "exp", "push", str(remote), NAME], repo)
    pushed = run(["git", "for-each-ref", "--format=%(refname)"], remote).stdout.split()
    assert any(ref.startswith("refs/exps/") for ref in pushed), pushed  # the experiment went...
    assert git_objects(remote)  # ...with its objects...
    assert not blob_ids(photos, repo) & git_objects(remote)  # ...and none of them is a photo


def test_exp_apply_then_repro_finds_the_images_again(experiment):
    repo, photos = experiment
    run(["dvc", "exp", "apply", NAME], repo)
    assert ran(run(["dvc", "repro"], repo).stdout) == set()
    again = run(["dvc", "exp", "run"], repo)  # every output recorded now: DVC has nothing to warn about
    assert ran(again.stdout) == set() and "No file hash info" not in again.stdout + again.stderr
    # A workspace without the links (a fresh clone, another machine): the source stage makes them again,
    # and the images are the same, so nothing after it runs.
    run(["rm", "-rf", "data/sources"], repo)
    assert ran(run(["dvc", "repro"], repo).stdout) == {f"source@{NAME}"}
    assert (repo / f"data/sources/{NAME}/images").resolve() == photos[0].parent.parent


def test_a_failed_source_stage_keeps_the_last_links(experiment, tmp_path):
    repo, photos = experiment
    params_file = repo / "params.yaml"
    good = params_file.read_text()
    params = yaml.safe_load(good)
    params["sources"][NAME]["folder"] = str(tmp_path / "moved-away")
    write_params(params_file, params)
    try:
        failed = run(["dvc", "repro"], repo, check=False)
        assert failed.returncode != 0
        assert "moved-away not found" in failed.stderr
        link = repo / f"data/sources/{NAME}/images"
        assert link.is_symlink() and link.resolve() == photos[0].parent.parent  # the last links, still there
    finally:
        params_file.write_text(good)
    assert ran(run(["dvc", "repro"], repo).stdout) <= {"check", f"source@{NAME}"}


def test_the_installed_filter_drops_only_the_no_hash_warning():
    """scripts/dvc_quiet.pth, as `make setup` installs it: the one DVC warning about an output never
    produced is dropped; another warning of the same logger, and that text at another level, pass."""
    import sys

    code = ("import logging; log = logging.getLogger('dvc_data.index.checkout'); "
            "r = lambda msg, level: log.filter(logging.makeLogRecord({'msg': msg, 'levelno': level})); "
            "print(len(log.filters), r(\"No file hash info found for '%s'. It won't be created.\", 30), "
            "r('Something else went wrong', 30), r(\"No file hash info found for '%s'.\", 40))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "False", "True", "True"]
