"""The GPU benchmark's code runs end to end without a GPU (`--dry-run`: CPU, tiny model), both
plans, the quick one writing each row as soon as it is measured; and it refuses clearly when asked
for CUDA on a machine without it."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_bench


def test_dry_run_measures_every_row_and_the_estimate(capsys, tmp_path):
    gpu_bench.main(["--dry-run", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    for row in ("triplet, study's way", "triplet, ours", "classification, study's way", "classification, ours",
                "embedding, study's way", "embedding, ours"):
        assert row in out
    assert "torch.compile" not in out.split("measurement")[1]  # compile rows only on CUDA (or --compile)
    assert "Estimated model time for the study's table" in out
    assert "ours:" in out and " h (speed-up " in out
    # The DDP rows: one process, then two gloo processes on the CPU standing in for two GPUs.
    assert "triplet DDP, ours: 1 CPU process, global batch 4 triplets" in out
    assert "triplet DDP, ours: 2 CPU processes, global batch 4 triplets" in out
    assert "scaling efficiency" in out and "one GPU: skipped" not in out
    # The evaluate rows at the dry run's sizes, and how they grow.
    assert "300 x 64, 10 classes" in out and "600 x 64, 10 classes" in out and "growth between the two sizes" in out


def test_with_one_gpu_the_ddp_row_says_it_is_skipped(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    rows, line = gpu_bench.ddp_rows(gpu_bench.TINY, torch.device("cuda"), dry_run=False)
    assert rows == [] and line == "triplet DDP: one GPU: skipped"


def test_the_estimate_counts_three_images_per_triplet():
    runs = {"one": (300, 30, 100)}
    # 100 epochs; triplet: 3 x (300 + 30/3) images at 10 img/s; classification: 300 + 10 at 10 img/s;
    # the test set embedded once per method at 100 img/s.
    hours = gpu_bench.study_table_hours(10.0, 10.0, 100.0, runs=runs, epochs=100)
    expected = (100 * 3 * 310 / 10 + 100 * 310 / 10 + 2 * 100 / 100) / 3600
    assert hours == pytest.approx(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so():
    with pytest.raises(SystemExit) as exc:
        gpu_bench.main([])
    message = str(exc.value.code)
    assert "needs a CUDA GPU" in message and "--dry-run" in message


def test_the_quick_dry_run_measures_every_row_and_writes_each_at_once(capsys, tmp_path):
    gpu_bench.main(["--dry-run", "--quick", "--out", str(tmp_path)])
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    lines = (tmp_path / "rows.txt").read_text().splitlines()
    out = capsys.readouterr().out
    assert len(lines) == len(rows) and all(line in out for line in lines)
    assert [r["elapsed_s"] for r in rows] == sorted(r["elapsed_s"] for r in rows)
    kinds = [r["row"] for r in rows]
    trained = ["classification", "normsoftmax", "supcon", "triplet", "triplet_batch_hard"]
    assert gpu_bench.trained_methods() == trained
    assert kinds == ["machine"] + ["train"] * 2 * len(trained) + ["embed", "fit", "kmeans", "retrieval", "evaluate",
                                                                  "total"]
    # Training: every method at params.yaml's deterministic (true) and not, the study's way beside two.
    train = [r for r in rows if r["row"] == "train"]
    assert [(r["method"], r["deterministic"], r["defaults"]) for r in train] == [
        (m, d, d) for m in trained for d in (True, False)]
    assert all(r["images_per_s"] > 0 for r in train)
    assert {r["method"] for r in train if r["study_images_per_s"]} == {"triplet", "classification"}
    embed = rows[kinds.index("embed")]
    assert embed["precision"] == "fp32" and embed["batch"] == gpu_bench.TINY.embed_batch and embed["images_per_s"] > 0
    # On the CPU training is deterministic: the rerun and the resumed run give the same weights.
    fit = rows[kinds.index("fit")]
    assert fit["epochs"] == 2 and fit["rerun_identical"] is True and fit["resumed_identical"] is True
    kmeans, retrieval = rows[kinds.index("kmeans")], rows[kinds.index("retrieval")]
    assert kmeans["points"] == 600 and kmeans["within_0.005"] is True
    assert abs(kmeans["kmeans_acc_device"] - kmeans["kmeans_acc_cpu"]) <= 0.005
    assert retrieval["largest_difference"] < 1e-6 and 0 < retrieval["cpu_scores"]["euclidean"]["map_at_r"] < 1
    evaluated = rows[kinds.index("evaluate")]
    assert (evaluated["points"], evaluated["dim"]) == (2_000, 64) and 0 < evaluated["kmeans_acc"] <= 1


def test_a_run_killed_midway_keeps_the_rows_it_finished(monkeypatch, tmp_path):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gpu_bench, "trained_methods", lambda: ["classification"])
    monkeypatch.setattr(gpu_bench, "fit_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        gpu_bench.main(["--dry-run", "--quick", "--out", str(tmp_path)])
    rows = [json.loads(line)["row"] for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert rows == ["machine", "train", "train", "embed"]
    assert len((tmp_path / "rows.txt").read_text().splitlines()) == 4


def test_without_out_the_rows_go_to_dollar_out(monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path / "lent"))
    assert gpu_bench.output_folder(None) == tmp_path / "lent"
    assert gpu_bench.output_folder(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("OUT")
    assert gpu_bench.output_folder(None) == gpu_bench.ROOT / "build" / "gpu-bench"
