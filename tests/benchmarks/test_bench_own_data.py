"""The CPU recipe's benchmark (docs/own-data.md): `bench_own_data.py --train-model` at a tiny size
trains each method for one epoch through the trainer the stages use, and reports every figure."""

from __future__ import annotations

import json

from benchmarks import bench_own_data


def test_the_training_cost_runs_each_method_through_the_stages_trainer(tmp_path, capsys):
    out = tmp_path / "cost.json"
    bench_own_data.main(["--train-model", "test_convnext", "--train-size", "32", "--images", "20", "--json", str(out)])
    figures = json.loads(out.read_text())
    assert (figures["model"], figures["image_size"], figures["train_images"]) == ("test_convnext", 32, 20)
    for part in ("classification", "triplet", "embed"):
        assert figures[part]["wall_s_per_1000"] > 0 and figures[part]["cpu_s_per_1000"] > 0, part
    printed = capsys.readouterr().out
    assert "triplet: one epoch" in printed and "load average" in printed
