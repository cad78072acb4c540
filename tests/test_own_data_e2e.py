"""End to end with the real `dvc repro`: docs/own-data.md's complete example, run as written
(its export command and its params, on top of the tests' tiny model), then DVC seeing one image
or one CSV row change, and nothing else."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import ROOT, project_copy, run, tiny_params, write_params


def readme_example() -> tuple[list[str], dict]:
    """The export command and the params fragment of docs/own-data.md's "A complete example"."""
    section = (ROOT / "docs/own-data.md").read_text()
    example = section.split("**A complete example**", 1)[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", example, re.S)
    command = next(body for lang, body in blocks if lang == "sh").strip()
    fragment = yaml.safe_load(next(body for lang, body in blocks if lang == "yaml"))
    return shlex.split(command), fragment


def merged(base: dict, fragment: dict) -> dict:
    """`base` with `fragment` laid over it, mappings merged key by key."""
    out = dict(base)
    for key, value in fragment.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def changed(repo) -> set[str]:
    """Stages `dvc status` says have changed (their own deps or outs; not yet what follows them)."""
    return set(json.loads(run(["dvc", "status", "--json"], repo).stdout))


def redraw(path, value: int) -> None:
    """Overwrite an image with different pixels of the same size and format."""
    with Image.open(path) as image:
        size, fmt = image.size, image.format
    pixels = np.random.default_rng(value).integers(0, 255, (size[1], size[0]), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path, format=fmt)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    command, fragment = readme_example()
    assert command[:2] == ["python", "scripts/export_digits.py"], command
    params = merged(tiny_params(methods=["pretrained"]), fragment)
    repo = project_copy(tmp_path_factory.mktemp("own") / "project", params)
    run([sys.executable, str(ROOT / command[1]), *command[2:]], repo)
    return repo, fragment


def test_readme_example_runs_then_dvc_sees_one_change_and_nothing_else(example):
    repo, fragment = example
    names = fragment["datasets"]
    assert names == ["digits_folder", "digits_table"]
    out = run(["dvc", "repro"], repo).stdout
    for name in names:
        for stage in ("source", "download", "split", "decode"):
            assert f"{stage}@{name}" in ran(out), (stage, name)
        metrics = json.loads((repo / f"metrics/{name}/pretrained/seed0.json").read_text())
        assert metrics["n_classes"] == 10 and 0 <= metrics["kmeans_acc"] <= 1
    # the folder's split is generated (test_fraction 0.25 of 20 per class); the CSV's is its own (4 of 20)
    assert json.loads((repo / "metrics/digits_folder/pretrained/seed0.json").read_text())["n_test"] == 50
    assert json.loads((repo / "metrics/digits_table/pretrained/seed0.json").read_text())["n_test"] == 40
    assert (repo / "report" / "summary.json").is_file()

    assert ran(run(["dvc", "repro"], repo).stdout) == set()  # nothing changed: nothing runs

    # The two datasets share the exported images; give the table its own copy (a params change:
    # the check stage reruns on any params change and writes the same data/checked; the table's
    # download reruns and finds the same images, so nothing after it runs).
    files = (repo / fragment["sources"]["digits_folder"]["folder"]).resolve()
    table_root = files.parent / "table-images"
    shutil.copytree(files, table_root)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sources"]["digits_table"]["root"] = str(table_root)
    write_params(repo / "params.yaml", params)
    assert ran(run(["dvc", "repro"], repo).stdout) == {"check", "source@digits_table", "download@digits_table"}

    # Edit one image of the folder: its download, split, decode and what follows rerun, nothing else.
    first = sorted((files / "3").iterdir())[0]
    redraw(first, 1)
    assert changed(repo) == {"download@digits_folder"}
    out = ran(run(["dvc", "repro"], repo).stdout)
    assert {"download@digits_folder", "split@digits_folder", "decode@digits_folder",
            "train@digits_folder-pretrained-0", "embed@digits_folder-pretrained-0"} <= out
    assert all("digits_folder" in stage or stage == "report" for stage in out), out
    manifest = (repo / "data/raw/digits_folder/manifest.csv").read_text()
    assert f"images/3/{first.name}" in manifest

    # Add one image, remove another: DVC sees each, on that dataset's download alone.
    added = files / "7" / "added.png"
    shutil.copyfile(first, added)
    assert changed(repo) == {"download@digits_folder"}
    added.unlink()
    removed = sorted((files / "5").iterdir())[-1]
    kept = removed.read_bytes()
    removed.unlink()
    assert changed(repo) == {"download@digits_folder"}
    removed.write_bytes(kept)

    # The CSV: edit a listed image, then add a row; each is seen on the table's stages alone.
    csv_file = (repo / fragment["sources"]["digits_table"]["csv"]).resolve()
    listed = csv_file.read_text().splitlines()[1].split(",")[0]
    redraw(table_root / listed, 2)
    assert changed(repo) == {"download@digits_table"}
    shutil.copyfile(first, table_root / "3" / "extra.png")
    with open(csv_file, "a") as handle:
        handle.write("3/extra.png,3,train\n")
    assert changed(repo) == {"source@digits_table", "download@digits_table"}  # the table is linked too
    out = ran(run(["dvc", "repro", *[f"download@{name}" for name in names]], repo).stdout)
    assert out == {"source@digits_table", "download@digits_table"}
    assert "images/3/3/extra.png" in (repo / "data/raw/digits_table/manifest.csv").read_text()
