"""Statistics over repeated runs: mean, spread, 95% confidence interval, paired comparison.

Pure functions. Runs with different training seeds share the split, so two methods trained
with the same seeds are compared pairwise (a paired t-test over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def summarise(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and the half-width of a t-based 95% CI (None for one run)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci95": half}


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int | str | None]:
    """Is method a's score different from b's beyond the seed-to-seed spread?

    Differences a - b per seed; their mean, 95% CI and the paired t-test's p-value. The verdict
    says whether the CI excludes zero, or that one seed cannot tell.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired values must be equal-length lists, got {x.shape} and {y.shape}")
    diff = x - y
    summary = summarise(diff)
    result: dict[str, float | int | str | None] = {
        "n": len(diff), "mean_difference": summary["mean"], "ci95": summary["ci95"], "p_value": None,
    }
    if len(diff) < 2:
        result["verdict"] = "one seed: no estimate of the spread; run more seeds"
    elif float(np.std(diff)) == 0.0:
        result["verdict"] = "identical differences on every seed" if diff[0] != 0 else "no difference"
    else:
        result["p_value"] = float(stats.ttest_rel(x, y).pvalue)
        low, high = summary["mean"] - summary["ci95"], summary["mean"] + summary["ci95"]
        result["verdict"] = (
            "difference larger than the spread (95% CI excludes 0)"
            if low > 0 or high < 0
            else "within the spread (95% CI includes 0)"
        )
    return result
