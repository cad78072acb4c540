"""The README holds on a fresh clone: its shell commands that need no network run verbatim, in order,
in a shell that has not activated `.venv`, and every figure about the demo that README.md and
docs/results.md print (numbers, intervals, tables) is what the current code computes on the demo's
configuration (`scripts/printed_figures.py`, which `--write`s them again). The README's demo chain
itself runs once, in tests/test_pipeline_e2e.py, which checks the demo's figures on its outputs."""

from __future__ import annotations

import re
import time

import pytest

from scripts import printed_figures as pf


def test_every_readme_command_runs_here_or_needs_what_this_machine_lacks():
    commands = pf.readme_commands()
    run = [c.line for c in commands if not c.skip]
    assert run == ["make demo", "source .venv/bin/activate", 'make demo ARGS="-S shots=15"',
                   "dvc exp diff demo demo-shots15",
                   "dvc exp show --drop '.*' --keep 'Experiment|.*seed0.json:kmeans_acc$|shots'",
                   "dvc plots show", "dvc exp apply demo"]
    skipped = {c.line: c.skip for c in commands if c.skip}
    assert skipped.pop("make test") == "the test suite itself (it runs this)"
    assert skipped.pop("dvc exp run -n study -S 'seeds=[0,1,2,3,4]'") == "needs a CUDA GPU and the network"
    assert skipped.pop("dvc queue start -j 2") == "needs GPUs, S3 or a second machine"
    assert {c.section for c in commands if c.skip and c.line != "make test"} == {"The study", "Scaling out"}
    # A shell block that needs `dvc` activates .venv before its first `dvc` (a fresh shell has none).
    for section, lines in pf.shell_blocks(pf.ROOT.joinpath("README.md").read_text()):
        uses = [i for i, line in enumerate(lines) if re.match(r"(dvc|python) ", line)]
        if uses and section != "Scaling out":  # that one follows the study's block, in its shell
            assert "source .venv/bin/activate" in lines[:uses[0]], (section, lines)


def test_a_fresh_shell_finds_dvc_only_once_venv_is_activated(tmp_path):
    """The newcomer's `dvc: command not found`: the README's shell is one without .venv on PATH."""
    repo = pf.fresh_copy(tmp_path / "clone")
    with pytest.raises(pf.FiguresError, match="dvc: command not found"):
        pf.run_shell(repo, ["dvc version"])
    [(_, out)] = pf.run_shell(repo, ["source .venv/bin/activate && dvc version"])
    assert "DVC version" in out


def test_a_command_past_its_time_limit_is_stopped_with_all_it_started(tmp_path):
    """A timed-out README command (a demo under heavy load) leaves nothing running: make, the demo
    and dvc are children of the shell, and the whole group is stopped, not only bash."""
    import subprocess

    marker = tmp_path / "alive"
    with pytest.raises(subprocess.TimeoutExpired):
        pf.run_shell(tmp_path, [f"(sleep 3; touch {marker}) & sleep 30"], timeout=1)
    time.sleep(4)
    assert not marker.exists()  # the background child was stopped with the shell


def test_a_block_that_differs_is_found_and_written_back_with_its_timings_and_hashes(tmp_path):
    runs = pf.Runs(demo={}, split={"train": 1259, "val": 179, "test": 359})
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("a (<!-- figures:demo-split -->1,259 train / 179 val / 358 test images"
                                        "<!-- /figures:demo-split -->) b\n")
    (tmp_path / "docs/results.md").write_text("none\n")
    [block] = pf.blocks(runs, root=tmp_path)
    assert block.differs and block.computed == "1,259 train / 179 val / 359 test images"
    pf.write([block], root=tmp_path)
    assert not pf.blocks(runs, root=tmp_path)[0].differs
    assert (tmp_path / "README.md").read_text().startswith("a (<!-- figures:demo-split -->1,259 train / 179 val / 359")
    assert pf._keep_printed("x (2.0 min) abcdef1 [demo]", "x (1.2 min) 1234567 [demo]") == "x (1.2 min) 1234567 [demo]"
    assert not pf.Block("p", "n", "(1.2 min) 1234567 [demo] 0.5", "(9.9 min) abcdef0 [demo] 0.5").differs
    assert pf.Block("p", "n", "(1.2 min) 0.5", "(1.2 min) 0.6").differs


def test_the_5_seed_blocks_render_the_primary_question_from_the_summary():
    """The 5-seed blocks from a hand-made summary: each method's accuracy, seed spread and chance
    level; the primary comparison's t-interval over seeds and its verdict; each seed's difference."""
    def method(acc, ci, std, mean, p95):
        return {"kmeans_acc": acc, "kmeans_acc_ci95": ci, "kmeans_acc_seed_std": std, "n_test": 359,
                "kmeans_acc_chance": {"mean": mean, "p95": p95, "inside_band_seeds": []}}

    summary = {"pretrained": method(0.663, [0.613, 0.71], 0.0, 0.2, 0.25),
               "classification": method(0.95, [0.93, 0.97], 0.01, 0.19, 0.22),
               "triplet": method(0.88, [0.84, 0.91], 0.03, 0.18, 0.21),
               "comparisons": {"triplet_vs_classification": {
                   "difference": -0.07, "ci95": [-0.1, -0.04], "interval": "seeds", "role": "primary", "seeds": 5,
                   "verdict": "triplet worse than classification (95% CI over 5 seeds excludes 0)",
                   "per_seed": {"0": {"difference": -0.058, "ci95": [-0.086, -0.031]},
                                "1": {"difference": -0.1, "ci95": [-0.13, -0.07]}}}}}
    assert pf.results_commands(heading=pf.SEEDS5_HEADING) == ['make demo ARGS="-S seeds=[0,1,2,3,4] -n seeds5"']
    printed = {m.group("name") for m in pf.MARK.finditer(pf.ROOT.joinpath("docs/results.md").read_text())}
    assert pf.SEEDS5 == {"seeds5-table", "seeds5-primary", "seeds5-per-seed"} and pf.SEEDS5 <= printed
    runs = pf.Runs(demo={}, split={}, seeds5=summary)
    table = pf.seeds5_table(runs)
    assert "| method (5 seeds, 359 test images) |" in table
    assert "| triplet | 88.0% [84.0, 91.0] | 3.0 | 18.0%, 21.0% |" in table
    assert "| untrained (`pretrained` without pretrained weights) | 66.3% [61.3, 71.0] | 0.0 | 20.0%, 25.0% |" in table
    assert pf.seeds5_primary(runs) == ("-7.0 points [-10.0, -4.0] over 5 seeds (t, 4 df): triplet worse than "
                                       "classification (95% CI over 5 seeds excludes 0)")
    assert pf.seeds5_per_seed(runs) == "seed 0: -5.8 [-8.6, -3.1], seed 1: -10.0 [-13.0, -7.0]"
    summary["comparisons"]["triplet_vs_classification"]["interval"] = "images"  # one seed: no method-level block
    with pytest.raises(pf.FiguresError, match="not the primary one over seeds"):
        pf.seeds5_primary(runs)
    with pytest.raises(pf.FiguresError, match="need --seeds5"):
        pf.seeds5_table(pf.Runs(demo={}, split={}))


def test_the_fair_fight_table_names_each_switch_and_what_it_came_to():
    """The fair-fight block from hand-made summaries: one row per experiment of the 5-seed and the
    fair-fight commands, each naming its switch and what it came to (the budget's amount, the values
    the search chose, the classes trained on and tested), each method's accuracy with its interval,
    and the primary comparison's interval and verdict; a one-seed comparison is refused."""
    def summary(difference, **triplet):
        def method(acc, **extra):
            return {"kmeans_acc": acc, "kmeans_acc_ci95": [acc - 0.02, acc + 0.02], **extra}

        return {"classification": method(0.9, **{k: v for k, v in triplet.items() if k == "tuned"}),
                "triplet": method(0.9 + difference, **triplet),
                "comparisons": {"triplet_vs_classification": {
                    "difference": difference, "ci95": [difference - 0.03, difference + 0.03], "interval": "seeds",
                    "role": "primary", "seeds": 5, "verdict": f"verdict {difference}"}}}

    commands = pf.results_commands(heading=pf.FAIR_HEADING)
    assert [pf.experiment_name(c) for c in commands] == ["fair-images", "fair-select", "fair-tuned", "fair-unseen"]
    assert all(c.startswith('make demo ARGS="-S seeds=[0,1,2,3,4] -S ') for c in commands)
    assert "fair-table" in {m.group("name") for m in pf.MARK.finditer(pf.ROOT.joinpath("docs/results.md").read_text())}
    fair = {"seeds5": summary(-0.05),
            "fair-images": summary(-0.04, budget={"kind": "images", "amount": 15108}),
            "fair-select": summary(-0.03),
            "fair-tuned": summary(0.01, tuned={"values": {"lr": 0.0012345, "margin": 0.5}}),
            "fair-unseen": summary(0.02, protocol={"train_classes": list("abcde"), "test_classes": list("fghij")})}
    rows = pf.fair_table(pf.Runs(demo={}, split={}, fair=fair)).strip().splitlines()[2:]
    assert rows == [
        "| the study's settings (the demo's) | 90.0% [88.0, 92.0] | 85.0% [83.0, 87.0] | -5.0 points [-8.0, -2.0] | "
        "verdict -0.05 |",
        "| `train.budget=images`: 15,108 images per run, every method | 90.0% [88.0, 92.0] | 86.0% [84.0, 88.0] | "
        "-4.0 points [-7.0, -1.0] | verdict -0.04 |",
        "| `train.select=val_kmeans` | 90.0% [88.0, 92.0] | 87.0% [85.0, 89.0] | -3.0 points [-6.0, +0.0] | "
        "verdict -0.03 |",
        "| `tune.trials=8`: classification lr 0.00123, margin 0.5; triplet lr 0.00123, margin 0.5 | "
        "90.0% [88.0, 92.0] | 91.0% [89.0, 93.0] | +1.0 points [-2.0, +4.0] | verdict 0.01 |",
        "| `split.classes=unseen`: trained on 5 classes, tested on the other 5 | 90.0% [88.0, 92.0] | "
        "92.0% [90.0, 94.0] | +2.0 points [-1.0, +5.0] | verdict 0.02 |",
    ]
    del fair["fair-tuned"]  # not run yet: its row says so
    assert pf.fair_table(pf.Runs(demo={}, split={}, fair=fair)).strip().splitlines()[5] == (
        "| `tune.trials=8` | not measured yet | | | |")
    fair["fair-select"]["comparisons"]["triplet_vs_classification"]["interval"] = "images"
    with pytest.raises(pf.FiguresError, match="fair-select: not the primary comparison over seeds"):
        pf.fair_table(pf.Runs(demo={}, split={}, fair=fair))
    with pytest.raises(pf.FiguresError, match="needs --fair"):
        pf.fair_table(pf.Runs(demo={}, split={}))


@pytest.mark.parametrize("groups, only, clone, todo", [
    (set(), False, False, ["demo"]),
    ({"seeds3"}, False, False, ["demo", "seeds3"]),
    ({"fair"}, False, False, ["demo", "seeds5", "fair"]),  # a fresh copy needs the 5-seed run first
    ({"fair"}, True, True, ["fair"]),  # a clone where it ran
    ({"fair", "seeds5"}, True, False, ["seeds5", "fair"]),
    ({"seeds3"}, True, True, ["seeds3"]),
])
def test_what_each_choice_of_blocks_runs(groups, only, clone, todo):
    assert pf.steps(groups, only=only, clone=clone) == todo
