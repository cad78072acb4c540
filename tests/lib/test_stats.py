"""Bootstrap intervals: exact edge cases, agreement with a naive resampling loop, hand-made pairs."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.stats import accuracy_ci, bootstrap_means, interval, paired_difference, summarise


def naive_bootstrap(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The textbook two-stage bootstrap: draw seeds, draw images (the same for every seed), average."""
    rng = np.random.default_rng(seed)
    n_seeds, n_images = values.shape
    out = np.empty(resamples)
    for r in range(resamples):
        seeds = rng.integers(n_seeds, size=n_seeds)
        images = rng.integers(n_images, size=n_images)
        out[r] = values[np.ix_(seeds, images)].mean()
    return out


def test_one_run_has_no_seed_spread():
    assert summarise([0.8]) == {"n": 1, "mean": 0.8, "std": None}
    s = summarise([0.80, 0.82, 0.84])
    assert s["mean"] == pytest.approx(0.82) and s["std"] == pytest.approx(0.02)  # sample std


def test_a_perfect_clustering_has_the_interval_1_1_and_a_run_against_itself_0_0():
    assert accuracy_ci(np.ones(50), resamples=2000, seed=0) == [1.0, 1.0]
    assert accuracy_ci(np.zeros(50), resamples=2000, seed=0) == [0.0, 0.0]
    correct = np.random.default_rng(1).random((3, 40)) < 0.7
    same = paired_difference(correct, correct, resamples=2000, seed=0)
    assert same == {"difference": 0.0, "ci95": [0.0, 0.0], "sign": 0}


@pytest.mark.parametrize("shape", [(1, 60), (3, 40)])
def test_the_pattern_bootstrap_has_the_distribution_of_the_naive_one(shape):
    rng = np.random.default_rng(2)
    values = (rng.random(shape) < 0.6).astype(float) - (rng.random(shape) < 0.2)  # values in {-1, 0, 1}
    fast = bootstrap_means(values, resamples=20_000, seed=3)
    slow = naive_bootstrap(values, 20_000, seed=4)
    assert fast.mean() == pytest.approx(values.mean(), abs=0.004)
    assert fast.std() == pytest.approx(slow.std(), rel=0.04)
    assert np.quantile(fast, [0.025, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.975]), abs=0.02)


def test_one_seed_matches_the_binomial_spread():
    correct = np.r_[np.ones(70), np.zeros(30)]
    replicates = bootstrap_means(correct, resamples=40_000, seed=0)
    assert replicates.std() == pytest.approx(np.sqrt(0.7 * 0.3 / 100), rel=0.03)
    lo, hi = accuracy_ci(correct, resamples=40_000, seed=0)
    assert lo == pytest.approx(0.61, abs=0.011) and hi == pytest.approx(0.79, abs=0.011)  # 0.7 -/+ 1.96 * 0.0458


def test_the_interval_is_fixed_by_the_seed_and_the_percentiles():
    correct = np.random.default_rng(5).random(30) < 0.5
    assert accuracy_ci(correct, resamples=5000, seed=9) == accuracy_ci(correct, resamples=5000, seed=9)
    assert interval(np.arange(1001) / 1000) == pytest.approx([0.025, 0.975])


def test_paired_difference_has_a_sign_and_is_paired():
    base = np.r_[np.ones(60), np.zeros(40)]
    better = base.copy()
    better[60:80] = 1  # 20 more right, none lost
    d = paired_difference(better, base, resamples=5000, seed=0)
    assert d["difference"] == pytest.approx(0.2) and d["sign"] == 1 and d["ci95"][0] > 0.1
    worse = paired_difference(base, better, resamples=5000, seed=0)
    assert worse["difference"] == pytest.approx(-0.2) and worse["sign"] == -1
    assert worse["ci95"] == pytest.approx([-d["ci95"][1], -d["ci95"][0]], abs=0.02)
    # Pairing matters: the same two accuracies with the changes spread over different images is less sure.
    shuffled = np.random.default_rng(0).permutation(better)
    unpaired = paired_difference(shuffled, base, resamples=5000, seed=0)
    assert unpaired["ci95"][1] - unpaired["ci95"][0] > 1.4 * (d["ci95"][1] - d["ci95"][0])


def test_seed_spread_widens_the_pooled_interval():
    rng = np.random.default_rng(0)
    base = (rng.random((3, 200)) < 0.7).astype(float)
    steady = np.clip(base + (rng.random((3, 200)) < 0.05), 0, 1)
    noisy = steady.copy()
    noisy[0] = base[0]  # one seed with no gain: the gain varies across seeds
    narrow = paired_difference(steady, base, resamples=5000, seed=0)["ci95"]
    wide = paired_difference(noisy, base, resamples=5000, seed=0)["ci95"]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_bad_shapes_are_errors_that_say_so():
    with pytest.raises(ValueError, match="same non-empty shape"):
        paired_difference(np.ones(3), np.ones(4), resamples=1000, seed=0)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_means(np.ones((0, 3)), resamples=10, seed=0)


def test_the_bootstrap_seed_reaches_every_interval():
    """The seed param makes every interval reproducible; a different seed gives different draws."""
    rng = np.random.default_rng(7)
    a, b = rng.random((2, 80)) < 0.6, rng.random((2, 80)) < 0.5
    for f in (lambda s: accuracy_ci(a, resamples=500, seed=s),
              lambda s: paired_difference(a, b, resamples=500, seed=s)["ci95"],
              lambda s: list(bootstrap_means(a, resamples=50, seed=s))):
        assert f(3) == f(3) and f(3) != f(4)


def test_two_seeds_are_resampled_too():
    """One seed all right, one all wrong: drawing seeds makes 0 and 1 possible; images alone cannot."""
    values = np.stack([np.ones(30), np.zeros(30)])
    replicates = bootstrap_means(values, resamples=2000, seed=0)
    assert set(np.unique(replicates)) == {0.0, 0.5, 1.0}
    assert accuracy_ci(values, resamples=2000, seed=0) == [0.0, 1.0]


def test_small_inputs_and_the_refusals():
    assert summarise([1.0, 3.0]) == {"n": 2, "mean": 2.0, "std": pytest.approx(np.sqrt(2))}
    one = paired_difference(np.ones(1), np.zeros(1), resamples=100, seed=0)  # one image is enough
    assert one == {"difference": 1.0, "ci95": [1.0, 1.0], "sign": 1}
    assert bootstrap_means(np.r_[1.0, 0.0], resamples=1, seed=0).shape == (1,)
    with pytest.raises(ValueError, match=r"^resamples must be >= 1, got 0$"):
        bootstrap_means(np.ones(3), resamples=0, seed=0)
    with pytest.raises(ValueError, match=r"^no values to summarise$"):
        summarise([])
    with pytest.raises(ValueError, match=r"got \(2, 2, 2\) and \(2, 2, 2\)"):
        paired_difference(np.ones((2, 2, 2)), np.ones((2, 2, 2)), resamples=10, seed=0)
    with pytest.raises(ValueError, match=r"got shape \(0, 3\)"):
        bootstrap_means(np.ones((0, 3)), resamples=10, seed=0)
