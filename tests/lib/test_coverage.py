"""scripts/coverage.py: the coverage bookkeeping by hand, and the script end to end on a tiny setting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scripts import coverage
from scripts.coverage import _covered, _summary, below_threshold, draw_images, markdown


def test_coverage_is_the_share_of_intervals_holding_the_truth():
    assert _covered([0.1, 0.3], 0.2) and _covered([0.2, 0.2], 0.2) and not _covered([0.21, 0.3], 0.2)
    assert not _covered(None, 0.2)  # no interval (one seed) holds nothing
    s = _summary([True, True, True, False], [0.1, 0.2, 0.3, 0.4])
    assert s == {"coverage": 0.75, "se": pytest.approx(np.sqrt(0.75 * 0.25 / 4)), "experiments": 4,
                 "mean_width": pytest.approx(0.25)}


def test_a_test_set_has_its_classes_in_blocks():
    labels, latent = draw_images(np.random.default_rng(0), 3, 4)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and latent.shape == (12, coverage.DIM)


def _result(kmeans_cov, t_cov, boot_cov, model_cov):
    summary = lambda c: {"coverage": c, "se": 0.01, "experiments": 100, "mean_width": 0.1}  # noqa: E731
    return {
        "quick": True, "seconds": {"wall": 1.0, "cpu": 1.0},
        "kmeans": {"n30": {"setting": {"classes": 5}, "n_test": 30, "truth": 0.87, "image_level": summary(kmeans_cov)}},
        "paired": {"n360": {"n_test": 360, "truth": 0.02, "per_seed_difference_sd": 0.047, "seeds": {
            "1": {"seed_t": None, "bootstrap": summary(boot_cov)},
            "3": {"seed_t": summary(t_cov), "bootstrap": summary(boot_cov)}}}},
        "paired_model": {"n360": {"n_test": 360, "truth": 0.01, "image_level": summary(model_cov)}},
    }


def test_below_threshold_names_every_interval_under_0_90_and_only_those():
    r = _result(0.79, 0.95, 0.70, 0.899)
    assert below_threshold(r) == ["kmeans/n30", "paired/n360/1/bootstrap", "paired/n360/3/bootstrap",
                                  "paired_model/n360"]
    assert below_threshold(_result(0.90, 0.95, 0.93, 0.95)) == []
    r["below_threshold"] = below_threshold(r)
    text = markdown(r)
    assert "| K-means accuracy, image-level bootstrap (5 classes) | 30 | 87.0% | 0.790 ± 0.010" in text
    assert "| A minus B, 1 seed(s), t-interval over seeds, truth: the methods | 360 | +2.0 pts | none" in text
    assert "Below 0.90: kmeans/n30, paired/n360/1/bootstrap" in text


def test_the_quick_run_end_to_end(tmp_path):
    result = coverage.main(["--quick", "--experiments", "4", "--truth", "4", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "coverage.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert (tmp_path / "coverage.md").read_text().startswith("# Measured coverage at nominal 0.95 (quick run")
    k = saved["kmeans"]["n30_5classes"]
    assert k["n_test"] == 30 and 0.2 < k["truth"] <= 1 and k["image_level"]["experiments"] == 4
    paired = saved["paired"]["n60_5classes"]
    assert paired["seeds"]["1"]["seed_t"] is None  # one seed: no method-level interval
    assert paired["seeds"]["1"]["bootstrap"]["experiments"] == 4
    three = paired["seeds"]["3"]
    assert three["seed_t"]["experiments"] == 4
    # Over 3 seeds the t-interval is wider than the percentile bootstrap (t = 4.3 against about 1.6 se).
    assert three["seed_t"]["mean_width"] > 1.5 * three["bootstrap"]["mean_width"]
    assert saved["below_threshold"] == below_threshold(saved)
