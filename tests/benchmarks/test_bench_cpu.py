"""`make bench` always ends with its table: its code at tiny sizes, each figure written to the JSON
file as soon as it is measured, and a measurement that comes out zero, negative or missing (the
memory the evaluation added at 30,000 points once read 0 and the division by it lost the whole
table) reported as such, never divided by."""

from __future__ import annotations

import json
import math
import re

import pytest

from benchmarks import bench_cpu, bench_evaluate


def test_make_bench_at_tiny_sizes_measures_every_figure_and_ends_with_its_table(tmp_path, capsys):
    figures = tmp_path / "figures.json"
    bench_cpu.main(["--images", "60", "--epochs", "1", "--points", "300", "--umap-small", "200", "--embed", "32",
                    "--repeats", "1", "--evaluate-points", "1000,2000", "--json", str(figures)])
    out = capsys.readouterr().out
    assert re.search(r"\ndata path speed-up: \d+\.\dx\n$", out), out[-500:]
    saved = json.loads(figures.read_text())
    data, train, later, evaluated = (saved[k] for k in ("data_path", "training", "stages", "evaluate"))
    assert data["study_images_per_s"] > 0 and data["ours_images_per_s"] > 0
    assert data["speedup"] == pytest.approx(data["ours_images_per_s"] / data["study_images_per_s"])
    assert (train["train_images"], train["val_images"]) == (40, 20)
    for method in ("classification", "triplet"):
        assert train[method]["study_s"] > 0 and train[method]["ours_s"] > 0
    assert later["embed"]["images"] == 32 and later["umap"]["points"] == 300 and later["umap_small"]["points"] == 200
    assert 0 < later["evaluate"]["kmeans_acc"] <= 1
    assert [r["points"] for r in evaluated] == [1000, 2000]
    for row in evaluated:
        # Measured in a process of its own with the peak started again after the points were made:
        # what the evaluation added is positive and below the whole peak.
        assert row["peak_since"] == "the evaluation's start"
        assert 0 < row["added_gib"] < row["peak_rss_gib"]
        assert row["added_gib"] == pytest.approx(row["peak_rss_gib"] - row["rss_before_gib"])
    table = out.split("\nmachine: ")[1]
    assert f"{data['speedup']:.1f}x" in table and "failed" not in table and "not measured" not in table
    assert re.search(r"growth 1000 -> 2000: time ~ N\^-?\d\.\d\d .*memory the evaluation adds ~ N\^-?\d\.\d\d", table)
    assert "total_s" in saved and saved["total_s"] > 0


# The rows of the run that died: 30,000 points where peak RSS less RSS before came out 0.
DIED = [
    {"points": 10_000, "dim": 768, "classes": 100, "total_s": 61.0, "kmeans_s": 50.0, "retrieval_s": 11.0,
     "peak_rss_gib": 1.1, "rss_before_gib": 0.8},
    {"points": 30_000, "dim": 768, "classes": 100, "total_s": 136.0, "kmeans_s": 100.0, "retrieval_s": 36.0,
     "peak_rss_gib": 0.9, "rss_before_gib": 0.9},
    {"points": 100_000, "dim": 768, "classes": 100, "total_s": 853.0, "kmeans_s": 400.0, "retrieval_s": 453.0,
     "peak_rss_gib": 2.0, "rss_before_gib": 1.0},
]


def test_a_zero_memory_growth_is_reported_as_zero_and_the_rest_of_the_row_still_measured():
    assert math.isnan(bench_evaluate.growth([{"points": 30_000, "gib": 0.0}, {"points": 100_000, "gib": 1.0}], "gib"))
    assert bench_evaluate.growth_text([{"points": 30_000, "gib": 0.0}, {"points": 100_000, "gib": 1.0}], "gib") == (
        "not measured (zero at 30000 points)")
    assert bench_evaluate.growth_text([{"points": 1, "s": -2.0}, {"points": 2, "s": 1.0}], "s") == (
        "not measured (negative at 1 points)")
    assert bench_evaluate.growth_text([{"points": 1}, {"points": 2, "s": 1.0}], "s") == (
        "not measured (missing at 1 points)")
    lines = bench_cpu.evaluate_lines(DIED)
    growth = lines[-1][0]
    assert growth.startswith("  growth 30000 -> 100000: time ~ N^1.53 (K-means ~ N^1.15, search ~ N^2.10)")
    assert growth.endswith("memory the evaluation adds ~ not measured (zero at 30000 points), not measured")
    assert lines[1][3] == "peak 0.90 GiB, +0.00 GiB"


def test_a_part_that_fails_or_measures_zero_is_reported_and_the_table_still_ends(monkeypatch, tmp_path, capsys):
    """Every part faked, cheaply: a zero baseline rate, a training that raises, stages that fail after
    their first figure, an evaluate size that fails and two whose memory growth reads zero."""
    monkeypatch.setattr(bench_cpu.study, "random_rgb_jpegs", lambda folder, n: [folder / f"{i}.jpg" for i in range(n)])
    monkeypatch.setattr(bench_cpu, "bench_data_path", lambda *a: {
        "images_per_epoch": 30, "study_images_per_s": 0.0, "ours_images_per_s": 500.0, "speedup": None,
        "ours_host_only_images_per_s": 900.0, "decode_once_s": 0.5, "decode_once_images_per_s": 20.0})

    def training(*args, **kwargs):
        raise RuntimeError("out of memory\nmore")

    def stages(decoded, n_embed, n_points, n_small, figures):
        figures.record("stages", {"embed": {"images": 8, "image_size": 64, "s": 0.0, "images_per_s": None}})
        raise ValueError("umap broke")

    rows = iter([{"points": 1, "failed": "boom"}, *DIED[1:]])

    def evaluate(points):
        row = next(rows)
        if "failed" in row:
            raise RuntimeError(f"bench_evaluate --points {points} failed")
        return row

    monkeypatch.setattr(bench_cpu, "bench_training", training)
    monkeypatch.setattr(bench_cpu, "bench_stages", stages)
    monkeypatch.setattr(bench_cpu.bench_evaluate, "run_in_subprocess", evaluate)
    figures = tmp_path / "f.json"
    bench_cpu.main(["--images", "10", "--evaluate-points", "10000,30000,100000", "--json", str(figures)])
    out = capsys.readouterr().out
    assert out.endswith("data path speed-up: n/a (zero)\n"), out
    table = out.split("\nmachine: ")[1]
    assert re.search(r"data path, triplet epoch .* \|\s+0 \|\s+500 \|\s+n/a \(zero\)", table)
    assert re.search(r"\ntraining epoch +\| +- \| +failed \| +RuntimeError: out of memory\n", table)
    assert re.search(r"\nembed 8 images at 64px .* \| +- \| +0\.00 \| +missing img/s\n", table)
    assert re.search(r"\numap +\| +- \| +failed \| +ValueError: umap broke\n", table)
    assert re.search(r"\nevaluate 10000 x 768 +\| +- \| +failed \| +RuntimeError: bench_evaluate --points 10000 "
                     r"failed\n", table)
    assert re.search(r"\nevaluate 30000 x 768, .* \| +- \| +136\.0 \| +peak 0\.90 GiB, \+0\.00 GiB\n", table)
    assert "memory the evaluation adds ~ not measured (zero at 30000 points)" in table
    saved = json.loads(figures.read_text())
    assert saved["training"] == {"failed": "RuntimeError: out of memory"}
    assert saved["stages"]["failed"] == "ValueError: umap broke" and saved["stages"]["embed"]["images"] == 8
    assert [r["points"] for r in saved["evaluate"]] == [10_000, 30_000, 100_000]
    assert saved["evaluate"][0]["failed"].startswith("RuntimeError")
