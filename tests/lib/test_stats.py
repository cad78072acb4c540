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


# --- Method-level intervals from seeds, p-values and Holm -------------------------------------

from scipy import stats as scipy_stats  # noqa: E402

from stages.lib.stats import (  # noqa: E402
    NO_METHOD_CLAIM,
    bootstrap_p_value,
    holm,
    secondary,
    seed_interval,
)


def naive_t_interval(d: list[float], confidence: float = 0.95) -> list[float]:
    """Textbook t-interval, every sum written out."""
    n = len(d)
    mean = sum(d) / n
    sd = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5
    t = scipy_stats.t.ppf(1 - (1 - confidence) / 2, n - 1)
    return [mean - t * sd / n**0.5, mean + t * sd / n**0.5]


def test_the_issue_s_three_seeds_give_the_wide_t_interval():
    r = seed_interval([-0.022, 0.072, 0.011])  # the demo's leak: -2.2, +7.2, +1.1 points
    assert r["claim"] == "method" and r["seeds"] == 3
    assert r["difference"] == pytest.approx(0.020333, abs=1e-6)
    assert r["ci95"] == pytest.approx([-0.0981, 0.1388], abs=5e-4)  # the issue's [-9.8, +13.9]
    assert r["seed_std"] == pytest.approx(0.04769, abs=1e-5)
    assert r["sign"] == 0


@pytest.mark.parametrize("d", [[0.01, 0.03], [0.05, 0.02, 0.04, 0.03, 0.06], list(np.linspace(-0.02, 0.05, 10))])
def test_the_seed_interval_is_the_textbook_t_interval_and_t_test(d):
    r = seed_interval(d)
    assert r["ci95"] == pytest.approx(naive_t_interval(d), rel=1e-12)
    test = scipy_stats.ttest_1samp(d, 0.0)
    assert r["p_value"] == pytest.approx(test.pvalue, rel=1e-10)
    assert r["ci95"] == pytest.approx(list(test.confidence_interval(0.95)), rel=1e-10)
    assert seed_interval(d, confidence=0.99)["ci95"] == pytest.approx(naive_t_interval(d, 0.99), rel=1e-12)
    assert r["sign"] == (1 if r["ci95"][0] > 0 else -1 if r["ci95"][1] < 0 else 0)


def test_one_seed_makes_no_method_level_claim():
    r = seed_interval([0.07])
    assert r == {"seeds": 1, "difference": 0.07, "claim": None, "ci95": None, "p_value": None, "sign": 0,
                 "reason": NO_METHOD_CLAIM}
    assert "two trained models, not two methods" in r["reason"]


def test_a_clear_gain_has_a_sign_and_identical_seeds_are_certain():
    assert seed_interval([0.05, 0.06, 0.055, 0.052])["sign"] == 1
    assert seed_interval([-0.05, -0.06, -0.055])["sign"] == -1
    same = seed_interval([0.02, 0.02, 0.02])
    assert same["ci95"] == pytest.approx([0.02, 0.02]) and same["p_value"] == 0.0 and same["sign"] == 1
    zero = seed_interval([0.0, 0.0])
    assert zero["p_value"] == 1.0 and zero["sign"] == 0


def test_the_t_interval_covers_and_the_percentile_bootstrap_over_three_seeds_does_not():
    """Normal per-seed differences, 1,200 studies of 3 seeds: the t-interval covers 95%; the
    percentile bootstrap over the 3 seeds (what the report printed) far less."""
    rng = np.random.default_rng(0)
    studies = rng.normal(loc=0.02, scale=0.047, size=(1200, 3))
    cis = [seed_interval(s)["ci95"] for s in studies]
    assert np.mean([lo <= 0.02 <= hi for lo, hi in cis]) == pytest.approx(0.95, abs=0.02)  # se 0.006
    boot = [interval(bootstrap_means(s[:, None], resamples=1000, seed=i)) for i, s in enumerate(studies[:300])]
    assert np.mean([lo <= 0.02 <= hi for lo, hi in boot]) < 0.88  # about 0.8 (se 0.023)


def test_bad_seed_differences_are_errors():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        seed_interval([])
    with pytest.raises(ValueError, match="^per-seed differences must be finite numbers$"):
        seed_interval([0.1, float("nan")])
    with pytest.raises(ValueError, match="confidence must be between 0 and 1, got 0"):
        seed_interval([0.1, 0.2], confidence=0)
    with pytest.raises(ValueError, match="confidence"):
        seed_interval([0.1, 0.2], confidence=1.0)


def naive_bootstrap_p(replicates) -> float:
    below = sum(1 for r in replicates if r <= 0) / len(replicates)
    above = sum(1 for r in replicates if r >= 0) / len(replicates)
    return min(1.0, 2 * min(below, above))


def test_the_bootstrap_p_value_counts_each_side_and_matches_the_interval():
    assert bootstrap_p_value(np.array([0.1, 0.2, -0.1, 0.3])) == pytest.approx(0.5)
    assert bootstrap_p_value(np.array([0.0, 0.0])) == 1.0
    assert bootstrap_p_value(np.array([0.1, 0.2])) == 0.0
    rng = np.random.default_rng(3)
    for shift in (-0.05, -0.02, 0.0, 0.01, 0.03, 0.08):
        r = rng.normal(shift, 0.02, size=4001)
        assert bootstrap_p_value(r) == pytest.approx(naive_bootstrap_p(r))
        lo, hi = interval(r)
        assert (bootstrap_p_value(r) < 0.05) == (lo > 0 or hi < 0)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_p_value(np.array([]))


def naive_holm(p: list[float]) -> list[float]:
    """Holm by its definition: the i-th smallest gets max over j <= i of (m - j + 1) p_(j), at most 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        out[i] = min(1.0, running)
    return out


def test_holm_on_worked_examples():
    # By hand (as statsmodels' multipletests(p, method="holm")[1] gives): sorted 0.005, 0.01, 0.03,
    # 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, made non-decreasing: 0.02, 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Capped at 1, and the running maximum carries a large early value forward.
    assert holm([0.5, 0.6, 0.01]) == pytest.approx([1.0, 1.0, 0.03])
    # Ties: both get (m - 1 + 1) * p of the first of them, then the running maximum.
    assert holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])
    assert holm([0.2]) == pytest.approx([0.2]) and len(holm([])) == 0
    rng = np.random.default_rng(1)
    for m in (2, 5, 12):
        p = list(rng.random(m) ** 3)
        assert holm(p) == pytest.approx(naive_holm(p))
    assert holm([0.0, 1.0]) == pytest.approx([0.0, 1.0])  # both ends are p-values
    for bad in ([0.1, 1.5], [-0.01], [float("nan"), 0.2]):
        with pytest.raises(ValueError, match="^p-values must be numbers between 0 and 1$"):
            holm(bad)
    with pytest.raises(ValueError, match=r"^need a 1-D array of p-values, got shape \(1, 2\)$"):
        holm([[0.1, 0.2]])


def test_secondary_comparisons_are_adjusted_together():
    differences = {"a": [0.05, 0.06, 0.055], "b": [0.01, -0.02, 0.03], "c": [0.04, 0.045, 0.03, 0.05],
                   "d": [0.02, 0.0, 0.03, 0.01, 0.015], "one": [0.2]}
    out = secondary(differences)
    raw = {k: seed_interval(v)["p_value"] for k, v in differences.items() if len(v) > 1}
    adjusted = dict(zip(raw, holm(list(raw.values())), strict=True))
    for name in raw:
        assert out[name]["p_holm"] == pytest.approx(adjusted[name])
        assert out[name]["comparisons"] == 4
        assert out[name]["ci_simultaneous"] == pytest.approx(
            naive_t_interval(differences[name], 1 - 0.05 / 4))
        assert out[name]["ci95"] == pytest.approx(naive_t_interval(differences[name]))
        assert out[name]["sign"] == (1 if adjusted[name] < 0.05 else 0)
    assert out["a"]["sign"] == 1 and out["b"]["sign"] == 0
    # d alone would be significant (p = 0.040), not after Holm (2 x 0.040 at its rank).
    assert out["d"]["p_value"] == pytest.approx(0.03994, abs=1e-4)
    assert out["d"]["p_holm"] == pytest.approx(0.0799, abs=2e-4)
    assert out["d"]["sign"] == 0 and seed_interval(differences["d"])["sign"] == 1
    assert out["one"]["p_holm"] is None and out["one"]["claim"] is None and out["one"]["ci_simultaneous"] is None
    # The simultaneous interval is wider than the single one.
    assert out["c"]["ci_simultaneous"][0] < out["c"]["ci95"][0] and out["c"]["ci_simultaneous"][1] > out["c"]["ci95"][1]


def test_a_secondary_loss_is_signed_and_the_untested_keep_their_place():
    """A comparison clearly below 0 after Holm gets sign -1; a one-seed comparison listed first
    neither stops the others nor counts among them; an adjusted p-value equal to alpha is not
    significant (strictly below)."""
    differences = {"one": [0.3], "loss": [-0.05, -0.06, -0.055, -0.052], "gain": [0.04, 0.045, 0.05]}
    out = secondary(differences)
    assert list(out) == ["one", "loss", "gain"]
    assert out["one"]["comparisons"] == 2 and out["one"]["sign"] == 0 and out["one"]["p_holm"] is None
    assert out["loss"]["sign"] == -1 and out["gain"]["sign"] == 1 and out["loss"]["comparisons"] == 2
    at = out["loss"]["p_holm"]
    assert secondary(differences, alpha=at)["loss"]["sign"] == 0
    assert secondary(differences, alpha=at * 1.000001)["loss"]["sign"] == -1


def test_right_and_wrong_vectors_may_be_booleans():
    """evaluate passes per-image right/wrong as booleans: the difference of two is -1, 0 or +1."""
    a = np.array([True, True, False, True, False, True])
    b = np.array([False, True, False, False, True, False])
    r = paired_difference(a, b, resamples=500, seed=0)
    assert r["difference"] == pytest.approx(2 / 6)
    assert r == paired_difference(a.astype(float), b.astype(float), resamples=500, seed=0)
    assert paired_difference(b, a, resamples=500, seed=0)["difference"] == pytest.approx(-2 / 6)
