"""Seed statistics: checked against hand-computed values."""

from __future__ import annotations

import pytest

from stages.lib.stats import paired_comparison, summarise


def test_one_run_has_no_spread():
    assert summarise([0.8]) == {"n": 1, "mean": 0.8, "std": None, "ci95": None}


def test_mean_std_and_t_interval():
    s = summarise([0.80, 0.82, 0.84])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.82)
    assert s["std"] == pytest.approx(0.02)  # sample std of 0.80, 0.82, 0.84
    # t(0.975, 2) = 4.302653; 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert s["ci95"] == pytest.approx(0.049683, abs=1e-6)


def test_paired_difference_beyond_the_spread():
    triplet = [0.90, 0.92, 0.91, 0.93]
    classification = [0.80, 0.81, 0.82, 0.82]
    c = paired_comparison(triplet, classification)
    assert c["mean_difference"] == pytest.approx(0.1025)
    assert c["p_value"] < 0.01 and c["verdict"].startswith("difference larger")


def test_paired_difference_within_the_spread():
    c = paired_comparison([0.80, 0.90, 0.85], [0.86, 0.84, 0.85])
    assert c["mean_difference"] == pytest.approx(0.0)
    assert c["verdict"].startswith("within the spread")


def test_one_seed_cannot_tell():
    c = paired_comparison([0.9], [0.8])
    assert c["p_value"] is None and c["verdict"].startswith("one seed")


def test_unpaired_lengths_are_an_error():
    with pytest.raises(ValueError):
        paired_comparison([0.1, 0.2], [0.1])
