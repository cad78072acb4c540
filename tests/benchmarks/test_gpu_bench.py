"""The GPU benchmark's code runs end to end without a GPU (`--dry-run`: CPU, tiny model), and
refuses clearly when asked for CUDA on a machine without it."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_bench


def test_dry_run_measures_every_row_and_the_estimate(capsys):
    gpu_bench.main(["--dry-run"])
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
