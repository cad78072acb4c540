"""Uncertainty of accuracies: bootstrap confidence intervals over test images and training seeds.

Pure functions. Every run of a dataset scores the same test images (the split depends on `seed`,
not on the training seed), so two methods are compared image by image: a paired bootstrap.

The bootstrap resamples test images with replacement (and, with several training seeds, the seeds
too: a two-stage bootstrap, the same resampled images for every seed). It is computed exactly and
fast for any number of images: an accuracy is a mean of per-image values from a small set (0/1,
or -1/0/1 for a difference), so resampling N images is a multinomial draw over the distinct
per-image patterns (at most 3^seeds of them), not an N-long index vector per resample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95


def summarise(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (None for one value) of per-seed values."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("no values to summarise")
    return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else None}


def bootstrap_means(values: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """`resamples` bootstrap replicates of the grand mean of `values` (seeds x images, or images).

    Each replicate draws N images with replacement (the same images for every seed) and, with
    more than one seed, S seeds with replacement, then averages the drawn values.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"need a non-empty seeds x images array, got shape {np.shape(values)}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n_seeds, n_images = x.shape
    patterns, counts = np.unique(x.T, axis=0, return_counts=True)  # P distinct columns, how many images each
    rng = np.random.default_rng(seed)
    images = rng.multinomial(n_images, counts / n_images, size=resamples)  # R x P
    if n_seeds > 1:
        seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples)  # R x S
    else:
        seeds = np.ones((resamples, 1), dtype=np.int64)
    sums = images @ patterns  # R x S: per replicate, each seed's sum over the drawn images
    return (sums * seeds).sum(axis=1) / (n_images * n_seeds)


def interval(replicates: np.ndarray) -> list[float]:
    """The central 95% percentile interval of bootstrap replicates, as [lo, hi]."""
    tail = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(replicates, [tail, 1 - tail])
    return [float(lo), float(hi)]


def accuracy_ci(correct: np.ndarray, *, resamples: int, seed: int) -> list[float]:
    """95% bootstrap CI of an accuracy from its per-image 0/1 vector (or seeds x images matrix)."""
    return interval(bootstrap_means(np.asarray(correct, dtype=float), resamples=resamples, seed=seed))


def paired_difference(a: np.ndarray, b: np.ndarray, *, resamples: int, seed: int) -> dict:
    """Accuracy of `a` minus accuracy of `b` on the same test images (per-image 0/1, images or
    seeds x images, seeds paired row by row): the difference and its paired bootstrap 95% CI, and
    whether the CI excludes zero (`sign`: +1 a better, -1 b better, 0 cannot tell)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"paired results must have the same non-empty shape, got {x.shape} and {y.shape}")
    diff = x - y
    lo, hi = interval(bootstrap_means(diff, resamples=resamples, seed=seed))
    return {"difference": float(diff.mean()), "ci95": [lo, hi], "sign": 1 if lo > 0 else -1 if hi < 0 else 0}


# Method-level statements come from training seeds. The image-level intervals above resample the
# test images of given trained models: with one seed they compare two trained models, not two
# methods. The functions below make a method-level interval from per-seed paired differences
# (one number per training seed: method A's accuracy minus method B's on the same test images)
# and adjust secondary comparisons for multiplicity (Holm).

NO_METHOD_CLAIM = (
    "one training seed: this compares two trained models, not two methods; only the image-level "
    "interval applies (train more seeds for a method-level statement)"
)


def seed_interval(differences: Sequence[float], *, confidence: float = CONFIDENCE) -> dict:
    """Method-level interval of "A minus B" from per-seed paired differences (one per seed).

    A Student t-interval with S - 1 degrees of freedom (scipy.stats.t): mean +/- t * sd / sqrt(S).
    It reaches beyond the observed range of the seeds, which a percentile bootstrap over S seeds
    cannot (its spread is about sqrt((S - 1) / S) of the standard error), and its coverage is exact
    for normally distributed per-seed differences at any S >= 2 (scripts/coverage.py measures it on
    simulated K-means accuracies). `p_value`: the two-sided one-sample t-test of a zero mean.

    With one seed there is no method-level claim: `claim` is None, `ci95` and `p_value` are None,
    `sign` is 0 and `reason` says why. `claim` is "method" otherwise.
    """
    from scipy import stats as scipy_stats

    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"need a non-empty 1-D array of per-seed differences, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("per-seed differences must be finite numbers")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    seeds = len(d)
    mean = float(d.mean())
    if seeds == 1:
        return {"seeds": 1, "difference": mean, "claim": None, "ci95": None, "p_value": None, "sign": 0,
                "reason": NO_METHOD_CLAIM}
    sd = float(d.std(ddof=1))
    se = sd / np.sqrt(seeds)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=seeds - 1)) * se
    lo, hi = mean - half, mean + half
    if se > 0:
        p = float(2 * scipy_stats.t.sf(abs(mean) / se, df=seeds - 1))
    else:  # every seed gave the same difference: certain, and zero only when it is zero
        p = 1.0 if mean == 0 else 0.0
    return {"seeds": seeds, "difference": mean, "claim": "method", "ci95": [lo, hi], "p_value": p,
            "seed_std": sd, "sign": 1 if lo > 0 else -1 if hi < 0 else 0}


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided p-value of "the mean is 0" from bootstrap replicates of a difference: twice the
    smaller share of replicates on either side of 0 (at most 1). It is the p-value that inverts the
    percentile interval: the central (1 - alpha) interval excludes 0 when it is below alpha."""
    r = np.asarray(replicates, dtype=float)
    if r.ndim != 1 or len(r) == 0:
        raise ValueError(f"need a non-empty 1-D array of replicates, got shape {r.shape}")
    return float(min(1.0, 2 * min(np.mean(r <= 0), np.mean(r >= 0))))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given.

    Sorted ascending, the i-th smallest of m p-values (i from 1) is multiplied by m - i + 1, then
    made non-decreasing (running maximum) and capped at 1. A comparison is significant at family-wise
    level alpha when its adjusted p-value is below alpha; the same as statsmodels'
    `multipletests(p, method="holm")[1]`."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"need a 1-D array of p-values, got shape {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be numbers between 0 and 1")
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def secondary(differences: dict[str, Sequence[float]], *, alpha: float = 1 - CONFIDENCE) -> dict[str, dict]:
    """Every secondary comparison's method-level result (`seed_interval`) with multiplicity taken
    into account: `p_holm`, the Holm-adjusted p-value over the comparisons that have one (at least
    two seeds), and `ci_simultaneous`, the interval at confidence 1 - alpha / m (Bonferroni: the m
    intervals cover their truths together with probability at least 1 - alpha). `sign` follows
    `p_holm` < alpha and the direction of the mean difference.

    Holm's tests have no simultaneous intervals of their own that say more than the Bonferroni ones
    (Strassburger & Bretz 2008: the compatible intervals of a rejected comparison only bound it on
    one side), so the intervals are Bonferroni's. They are consistent with the verdicts one way: a
    Bonferroni interval that excludes 0 has p < alpha / m, hence p_holm < alpha; a comparison can
    be significant after Holm while its Bonferroni interval still touches 0.
    Comparisons with one seed get no p-value and no claim (`seed_interval`'s refusal)."""
    results = {name: seed_interval(d) for name, d in differences.items()}
    tested = [name for name, r in results.items() if r["p_value"] is not None]
    m = len(tested)
    adjusted = holm([results[name]["p_value"] for name in tested]) if m else np.empty(0)
    out = {}
    for name, r in results.items():
        if r["p_value"] is None:
            out[name] = {**r, "p_holm": None, "ci_simultaneous": None, "comparisons": m}
            continue
        p_holm = float(adjusted[tested.index(name)])
        wide = seed_interval(differences[name], confidence=1 - alpha / m)["ci95"]
        sign = (1 if r["difference"] > 0 else -1) if p_holm < alpha else 0
        out[name] = {**r, "p_holm": p_holm, "ci_simultaneous": wide, "comparisons": m, "sign": sign}
    return out
