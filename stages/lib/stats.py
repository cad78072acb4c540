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
