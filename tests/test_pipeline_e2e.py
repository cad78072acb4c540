"""End to end on the demo's own configuration: the README's commands, verbatim and in order, in a fresh
copy of the project (`make demo`, `make demo ARGS="-S shots=15"`, `dvc exp diff`, `dvc exp show`,
`dvc plots show`, `dvc exp apply demo`; scripts/printed_figures.py runs them, with torch's threads
pinned as it pins them), once for the module. From what they wrote:

- every figure about the demo that README.md and docs/results.md print is what the current code
  computes (`python scripts/printed_figures.py --write` puts them back);
- the wiring: which stages DVC ran (so a missing dependency or one too many fails), and that the
  numbers agree from stage to stage: the predictions the clustering wrote, the metrics files, the
  report, and what DVC's own commands show; the k-shot experiment reruns from the split and keeps
  the test set.

What each stage computes is tested at the stage level (tests/stages/); what runs here is the wiring.
One method's param rerunning that method alone: tests/test_scaling_e2e.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment

from scripts import printed_figures as pf
from tests.helpers import run

METHODS = ("pretrained", "classification", "triplet")
PER_RUN = ("train", "embed", "evaluate", "umap", "pictures")  # the stages of one method's run
DATA = ("source@digits", "download@digits", "annotations", "decode@digits", "weights")  # before split
FIGURE_BLOCKS = {"demo-results", "demo-split", "demo-table", "shots15-transcript"}
MAKE_DEMO, ACTIVATE, MAKE_SHOTS15 = "make demo", "source .venv/bin/activate", 'make demo ARGS="-S shots=15"'


def chains() -> set[str]:
    return {f"{stage}@digits-{method}-0" for method in METHODS for stage in PER_RUN}


TUNE = {f"tune@digits-{m}" for m in METHODS}  # tune.trials 0: each writes the given values (no search)
EVERY_STAGE = {"check", *DATA, "split@digits", *TUNE, *chains(), "report"}


def ran(out: str) -> set[str]:
    """The stages a dvc command ran, from its output."""
    names = re.findall(r"Running stage '([^']+)'", out)
    assert len(names) == len(set(names)), f"a stage ran twice: {names}"
    return set(names)


def metrics(repo: Path, method: str) -> dict:
    return json.loads((repo / f"metrics/digits/{method}/seed0.json").read_text())


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@dataclass
class Snapshot:
    """What one experiment left in the workspace, read right after it."""

    splits: dict[str, bytes]
    metrics: dict[str, dict]
    summary: dict


def snapshot(repo: Path) -> Snapshot:
    return Snapshot({name: (repo / f"data/splits/digits/{name}.csv").read_bytes() for name in ("train", "val", "test")},
                    {m: metrics(repo, m) for m in METHODS},
                    json.loads((repo / "report/summary.json").read_text())["digits"])


@dataclass
class Readme:
    repo: Path
    runs: pf.Runs  # the commands' outputs and the demo's figures, as scripts/printed_figures.py reads them
    demo: Snapshot  # right after `make demo`
    shots15: Snapshot  # right after `make demo ARGS="-S shots=15"`


@pytest.fixture(scope="module")
def readme(tmp_path_factory) -> Readme:
    """The README's commands in a fresh copy, as `scripts/printed_figures.py` runs them (a shell that
    has not activated .venv, torch's threads pinned), stopping after each demo to read what it wrote;
    the workspace ends as `dvc exp apply demo` leaves it."""
    commands = pf.demo_commands()
    assert commands[:3] == [MAKE_DEMO, ACTIVATE, MAKE_SHOTS15], commands
    repo = pf.fresh_copy(tmp_path_factory.mktemp("readme") / "clone")
    outputs = pf.run_shell(repo, commands[:1], timeout=3600)  # 30 min was too short under a load of 16
    demo = snapshot(repo)
    outputs += pf.run_shell(repo, commands[1:3], timeout=3600)
    shots15 = snapshot(repo)
    outputs += pf.run_shell(repo, [ACTIVATE, *commands[3:]], timeout=600)[1:]  # a new shell: activate again
    return Readme(repo, pf.read_runs(repo, outputs), demo, shots15)


def test_the_readme_commands_run_verbatim_in_a_fresh_clone(readme):
    repo, runs = readme.repo, readme.runs
    made = runs.outputs[MAKE_DEMO]
    assert "Recorded as experiment `demo`" in made and "source .venv/bin/activate" in made
    diff = runs.outputs["dvc exp diff demo demo-shots15"]
    assert re.search(r"metrics/digits/triplet/seed0\.json\s+kmeans_acc\s+0\.\d+\s+0\.\d+", diff)
    assert re.search(r"params\.yaml\s+shots\s+0\s+15\s+15", diff)
    assert "Changes for experiment 'demo' have been applied" in runs.outputs["dvc exp apply demo"]
    assert (repo / "dvc_plots/index.html").is_file()
    shown = runs.outputs[pf.SHOW_MD]
    assert re.search(r"\[demo-shots15\] +\| 0\.\d+ ", shown) and re.search(r"\[demo\] +\| 0\.\d+ ", shown)


def test_every_printed_figure_about_the_demo_is_what_the_code_computes(readme):
    if pf.this_cpu() != pf.PRINTED_ON:
        pytest.skip(f"the demo's figures were printed on a {pf.PRINTED_ON} CPU and this one is {pf.this_cpu()}: "
                    "their last bits, and so the clustering, may differ (docs/results.md)")
    found = pf.blocks(readme.runs, FIGURE_BLOCKS)
    assert sorted(b.name for b in found) == sorted(FIGURE_BLOCKS)
    stale = [f"{b.path} {b.name}:\n  printed:  {b.printed.strip()}\n  computed: {b.computed.strip()}"
             for b in found if b.differs]
    assert not stale, "run `python scripts/printed_figures.py --write`:\n" + "\n".join(stale)


def test_the_3_and_5_seed_figures_hold_the_demos_seed_0(readme):
    """Seed 0 of the 3-seed experiment `seeds3` and of the 5-seed one `seeds5` is the demo's run: where
    docs/results.md prints it, it is the demo's number (the rest of those blocks: `printed_figures.py
    --seeds3`, `--seeds5`)."""
    if pf.this_cpu() != pf.PRINTED_ON:
        pytest.skip(f"printed on a {pf.PRINTED_ON} CPU, this one is {pf.this_cpu()} (docs/results.md)")
    text = pf.ROOT.joinpath("docs/results.md").read_text()
    diff = next(m.group("body") for m in pf.MARK.finditer(text) if m.group("name") == "seeds3-diff")
    seed0 = re.search(r"metrics/digits/triplet/seed0\.json\s+kmeans_acc\s+(\S+)\s", diff).group(1)
    assert float(seed0) == pytest.approx(readme.runs.demo["triplet"]["kmeans_acc"], abs=5e-6)
    per_seed = next(m.group("body") for m in pf.MARK.finditer(text) if m.group("name") == "seeds5-per-seed")
    demo = readme.runs.demo["comparisons"]["triplet_vs_classification"]["per_seed"]["0"]
    assert per_seed.startswith(f"seed 0: {pf.short(demo)}, ")


def test_the_demo_runs_every_stage_once_and_the_numbers_agree_from_stage_to_stage(readme):
    repo, scores = readme.repo, readme.demo.metrics
    assert ran(readme.runs.outputs[MAKE_DEMO]) == EVERY_STAGE
    # `dvc exp apply demo` (the last command) brought the demo's files back, byte for byte
    assert snapshot(repo) == readme.demo
    test_rows = rows(repo / "data/splits/digits/test.csv")
    summary = readme.demo.summary
    for method in METHODS:
        m = scores[method]
        assert (m["n_test"], m["n_classes"]) == (len(test_rows), 10)
        # The clustering's predictions cover exactly the test split, and their one-to-one matching of
        # clusters to classes gives the accuracy in the metrics file.
        predicted = rows(repo / f"data/predictions/digits/{method}/seed0.csv")
        assert [(p["row"], p["label"]) for p in predicted] == [(t["row"], t["label"]) for t in test_rows]
        labels = np.array([int(p["label"]) for p in predicted])
        clusters = np.array([int(p["cluster"]) for p in predicted])
        table = np.zeros((10, clusters.max() + 1))
        np.add.at(table, (labels, clusters), 1)
        matched = table[linear_sum_assignment(-table)].sum() / len(labels)
        assert m["kmeans_acc"] == pytest.approx(matched, abs=1e-6)
        assert m["kmeans_acc"] == pytest.approx(np.mean([int(p["correct"]) for p in predicted]), abs=1e-6)
        assert summary[method]["kmeans_acc"] == m["kmeans_acc"]  # one seed: the mean is that run's value
        assert (summary[method]["shots"], summary[method]["seeds"]) == (0, 1)
    difference = summary["comparisons"]["triplet_vs_classification"]["per_seed"]["0"]["difference"]
    assert difference == pytest.approx(scores["triplet"]["kmeans_acc"] - scores["classification"]["kmeans_acc"],
                                       abs=2e-6)
    pictures = [f"plots/{kind}/digits_{m}_seed0.png" for kind in ("umap", "retrieval", "confusion") for m in METHODS]
    pictures += [f"plots/report/{name}" for name in ("summary.png", "umap_grid.png", "curves_digits.png")]
    for picture in pictures:
        with Image.open(repo / picture) as image:
            assert image.format == "PNG" and min(image.size) >= 200, picture
            assert np.asarray(image.convert("L")).std() > 5, f"{picture} is blank"

    assert ran(run(["dvc", "repro"], repo).stdout) == set()  # nothing changed: nothing runs
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    files = next(iter(shown.values()))["data"]  # DVC 3: {"": {"data": {file: {"data": {...}}}}}
    assert {f: v["data"]["kmeans_acc"] for f, v in files.items()} == {
        f"metrics/digits/{m}/seed0.json": scores[m]["kmeans_acc"] for m in METHODS}


def test_a_k_shot_experiment_reruns_from_the_split_and_dvc_compares_it_with_the_demo(readme):
    before, after = readme.demo, readme.shots15
    # The untrained network (`pretrained`) comes out of its train stage the same whatever the training
    # split, and the test set is the same: DVC reuses its embeddings and scores.
    reused = {"embed@digits-pretrained-0", "evaluate@digits-pretrained-0"}
    assert ran(readme.runs.outputs[MAKE_SHOTS15]) == {"check", "split@digits", *TUNE, *chains(), "report"} - reused
    train = list(csv.DictReader(io.StringIO(after.splits["train"].decode())))
    assert sorted(r["label"] for r in train) == sorted(str(c) for c in range(10) for _ in range(15))
    assert (after.splits["test"], after.splits["val"]) == (before.splits["test"], before.splits["val"])
    assert after.summary["triplet"]["shots"] == 15 and before.summary["triplet"]["shots"] == 0

    # `dvc exp diff demo demo-shots15` as the README ran it: each method's K-means accuracy, old and new,
    # is what the two runs wrote (DVC prints 5 significant digits)
    diff = readme.runs.outputs["dvc exp diff demo demo-shots15"]
    for m in ("classification", "triplet"):
        old, new = re.search(rf"metrics/digits/{m}/seed0\.json\s+kmeans_acc\s+(\S+)\s+(\S+)\s", diff).groups()
        assert float(old) == pytest.approx(before.metrics[m]["kmeans_acc"], rel=1e-4)
        assert float(new) == pytest.approx(after.metrics[m]["kmeans_acc"], rel=1e-4)
    assert before.metrics["classification"]["kmeans_acc"] != after.metrics["classification"]["kmeans_acc"]

    shown = run(["dvc", "exp", "show", "--csv", "--drop", ".*", "--keep",
                 r"Experiment|shots|.*triplet/seed0\.json:kmeans_acc$"], readme.repo).stdout
    table = {(r["Experiment"], r["shots"], float(r["metrics/digits/triplet/seed0.json:kmeans_acc"]))
             for r in csv.DictReader(io.StringIO(shown)) if r["Experiment"] in ("demo", "demo-shots15")}
    assert table == {("demo", "0", before.metrics["triplet"]["kmeans_acc"]),
                     ("demo-shots15", "15", after.metrics["triplet"]["kmeans_acc"])}
