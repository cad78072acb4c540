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
