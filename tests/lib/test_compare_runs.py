"""scripts/compare_runs.py: one method's accuracy across two runs, paired image by image."""

from __future__ import annotations

import pandas as pd
import pytest

from scripts.compare_runs import CompareError, compare, main


def write(folder, seed, correct, rows=None):
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(range(len(correct))) if rows is None else rows
    pd.DataFrame({"row": rows, "correct": correct, "correct_l2": [1] * len(correct)}).to_csv(
        folder / f"seed{seed}.csv", index=False)


def test_a_run_against_itself_is_zero_with_a_zero_interval(tmp_path):
    write(tmp_path / "a", 0, [1, 0, 1, 1, 0, 1])
    r = compare(tmp_path / "a", tmp_path / "a", resamples=1000)
    assert r["difference"] == {"difference": 0.0, "ci95": [0.0, 0.0], "sign": 0}
    assert r["a"]["kmeans_acc"] == r["b"]["kmeans_acc"] == pytest.approx(4 / 6)


def test_the_difference_is_b_minus_a_pooled_over_seeds_and_per_seed(tmp_path):
    for s, (a, b) in enumerate((([0, 0, 1, 1], [1, 1, 1, 1]), ([0, 1, 1, 1], [1, 1, 1, 1]))):
        write(tmp_path / "a", s, a)
        write(tmp_path / "b", s, b)
    r = compare(tmp_path / "b", tmp_path / "a", resamples=2000)
    assert r["seeds"] == [0, 1] and r["n_test"] == 4
    assert r["difference"]["difference"] == pytest.approx(3 / 8)  # B 8/8, A 5/8
    assert r["per_seed"][0]["difference"] == 0.5 and r["per_seed"][1]["difference"] == 0.25
    # Two seeds: a t-interval over the two per-seed differences (1 degree of freedom), as the report.
    half = 12.706204736 * 0.125  # t(0.975, 1) x sd(0.5, 0.25) / sqrt(2)
    assert r["difference"]["ci95"] == pytest.approx([3 / 8 - half, 3 / 8 + half]) and r["difference"]["sign"] == 0
    assert r["difference"]["claim"] == "method"
    assert compare(tmp_path / "b", tmp_path / "a", l2=True, resamples=1000)["difference"]["difference"] == 0


def test_runs_on_other_images_or_seeds_are_refused(tmp_path):
    write(tmp_path / "a", 0, [1, 0, 1])
    write(tmp_path / "b", 0, [1, 0, 1], rows=[0, 1, 5])
    with pytest.raises(CompareError, match="other test images"):
        compare(tmp_path / "b", tmp_path / "a")
    write(tmp_path / "c", 1, [1, 0, 1])
    with pytest.raises(CompareError, match="other seeds"):
        compare(tmp_path / "c", tmp_path / "a")
    with pytest.raises(CompareError, match="no such folder"):
        compare(tmp_path / "missing", tmp_path / "a")


def test_the_command_prints_both_runs_and_the_verdict(tmp_path, capsys):
    write(tmp_path / "a", 0, [0] * 30)
    write(tmp_path / "b", 0, [1] * 30)
    assert main([str(tmp_path / "b"), str(tmp_path / "a"), "--resamples", "1000"]) == 0
    out = capsys.readouterr().out
    assert "K-means accuracy 100.0% [100.0%, 100.0%]" in out and "K-means accuracy 0.0% [0.0%, 0.0%]" in out
    assert ("B - A: +100.0 points [+100.0, +100.0], 30 test images x 1 seed(s), one seed: two trained models, "
            "not the two settings: B better") in out
    assert main([str(tmp_path / "nope"), str(tmp_path / "a")]) == 1
    assert "error:" in capsys.readouterr().err


def test_three_seeds_give_the_t_interval_of_the_per_seed_differences(tmp_path):
    """The docs' 3-seed leak measurement: -8, +26 and +4 of 359 images, seed by seed."""
    n = 359
    for s, gained in enumerate((-8, 26, 4)):
        a = [1] * 300 + [0] * (n - 300)
        b = list(a)
        if gained < 0:
            b[:-gained] = [0] * -gained  # B loses images A got right
        else:
            b[300:300 + gained] = [1] * gained  # B gets images A got wrong
        write(tmp_path / "a", s, a)
        write(tmp_path / "b", s, b)
    r = compare(tmp_path / "b", tmp_path / "a", resamples=200)
    d = [-8 / n, 26 / n, 4 / n]
    mean = sum(d) / 3
    sd = (sum((x - mean) ** 2 for x in d) / 2) ** 0.5
    half = 4.302652730 * sd / 3 ** 0.5  # t(0.975, 2)
    assert r["difference"]["difference"] == pytest.approx(mean)
    assert r["difference"]["ci95"] == pytest.approx([mean - half, mean + half])
    assert [round(x * 100, 1) for x in r["difference"]["ci95"]] == [-9.9, 14.0]
