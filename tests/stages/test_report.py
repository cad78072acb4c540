"""The report's numbers against hand-computed ones, its leak notes, and when it shows the study's number.

Small test sets make the bootstrap intervals computable by hand: resampling n images is a
binomial draw, so e.g. 3 of 4 right gives P(at most 1 right) = 0.4% + 4.7% = 5.1%: the 2.5%
percentile is 1/4 and the 97.5% percentile is 1 (P(4 right) = 31.6%).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages import report
from stages.lib.errors import PipelineError
from stages.lib.leaks import no_leak
from stages.lib.params import params_from_dict
from stages.lib.summary import ONE_SEED, summarise_runs
from stages.lib.summary_records import METRICS, summary_json
from tests.helpers import default_params, with_changes

CHANCE = {"mean": 0.125, "p95": 0.25, "permutations": 200, "seed": 0}


def write_run(root, dataset, method, seed, correct, *, leak=None, pool=None, scores=None, correct_l2=None,
              chance=None, chance_l2=None, study_labels=None):
    """One run's metrics and predictions; `study_labels`: its mislabelled count, scored the study's way
    (evaluate.labels: study), else scored against the true labels."""
    correct = np.asarray(correct)
    correct_l2 = correct if correct_l2 is None else np.asarray(correct_l2)
    n = len(correct)
    metrics = {"kmeans_acc": float(correct.mean()), "nmi": 0.5, "ari": 0.25, "precision_at_1": 0.5,
               "map_at_r": 0.5, "knn_acc": 0.5, **(scores or {}), "n_test": n, "n_classes": 2,
               "leak": leak or no_leak(), "kmeans_acc_chance": {**CHANCE, **(chance or {})}}
    metrics["l2"] = {**{k: metrics[k] for k in METRICS}, "kmeans_acc": float(correct_l2.mean()),
                     "kmeans_acc_chance": {**CHANCE, **(chance_l2 or chance or {})}}
    if pool:
        metrics["triplet_pool"] = pool
    if study_labels is not None:
        metrics.update(labels="study", mislabelled=study_labels)
    path = root / "metrics" / dataset / method / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    table = root / "predictions" / dataset / method / f"seed{seed}.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"row": np.arange(n), "correct": correct, "correct_l2": correct_l2}).to_csv(table, index=False)


def params(**changes):
    raw = default_params()
    raw.update(datasets=["pets"], methods=["classification", "triplet"], seeds=[0])
    return params_from_dict(with_changes(raw, **changes))


def summary_of(tmp_path, p):
    """The summary as report/summary.json holds it."""
    return summary_json(summarise(tmp_path, p))


def summarise(tmp_path, p):
    runs = report.read_runs(tmp_path / "metrics", tmp_path / "predictions", p.datasets, p.methods, p.seeds)
    return summarise_runs(runs, p)


def test_one_seed_intervals_and_the_paired_difference_by_hand(tmp_path):
    write_run(tmp_path, "pets", "classification", 0, [1, 1, 1, 1, 1, 1, 0, 0])
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 1, 1, 1, 1, 0], pool="split")
    s = summary_of(tmp_path, params())["pets"]
    assert s["classification"]["kmeans_acc"] == 0.75 and s["triplet"]["kmeans_acc"] == 0.875
    # triplet: k ~ Bin(8, 7/8); P(k <= 4) = 1.1%, P(k <= 5) = 6.7%: [5/8, 1].
    assert s["triplet"]["kmeans_acc_ci95"] == [0.625, 1.0]
    c = s["comparisons"]["triplet_vs_classification"]
    # Per-image differences: one +1 and seven 0s; k ~ Bin(8, 1/8): P(0) = 34% -> lo 0; P(k >= 4) = 1.1%,
    # P(k >= 3) = 6.7% -> hi 3/8.
    assert c["difference"] == 0.125 and c["ci95"] == [0.0, 0.375] and c["sign"] == 0
    assert c["verdict"] == ONE_SEED and c["interval"] == "images" and c["claim"] is False
    assert c["per_seed"]["0"]["ci95"] == [0.0, 0.375] and "seed_std" not in c


def test_one_seed_shows_the_image_level_interval_and_makes_no_method_level_claim(tmp_path):
    """Even a difference the test set shows (CI [62.5, 100]) is two trained models with one seed."""
    write_run(tmp_path, "pets", "classification", 0, [0, 0, 0, 0, 0, 0, 0, 1])
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 1, 1, 1, 1, 1], pool="split")
    p = params()
    c = summary_of(tmp_path, p)["pets"]["comparisons"]["triplet_vs_classification"]
    assert c["difference"] == 0.875 and c["ci95"] == [0.625, 1.0] and c["sign"] == 1
    assert c["verdict"] == ONE_SEED and c["claim"] is False and c["role"] == "primary" and "p_value" not in c
    assert c["l2"]["verdict"] == ONE_SEED and c["l2"]["role"] == "secondary" and "p_holm" not in c["l2"]
    text = report.markdown(summarise(tmp_path, p), p)
    assert "better than classification" not in text and "worse than" not in text
    line = next(x for x in text.splitlines() if x.startswith("**Primary question**"))
    assert "image-level 95% CI [62.5, 100.0] (two trained models, one seed each)" in line
    assert "compares two trained models on these test images, not two methods; no method-level claim" in line
    write_run(tmp_path, "pets", "triplet", 0, [0, 0, 0, 0, 0, 0, 0, 0], pool="split")
    c = summary_of(tmp_path, params())["pets"]["comparisons"]["triplet_vs_classification"]
    # k ~ Bin(8, 1/8) images lost: P(k <= 2) = 93.3%, P(k <= 3) = 98.9% -> lo -3/8; P(k = 0) = 34% -> hi 0.
    assert c["difference"] == -0.125 and c["ci95"] == [-0.375, 0.0] and c["sign"] == 0


def test_seed_means_spreads_and_pairing(tmp_path):
    base = [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]  # 0.5, 0.25, 0.75
    better = [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]  # 0.75, 0.5, 1.0: +0.25 on every seed
    for seed in range(3):
        write_run(tmp_path, "pets", "classification", seed, base[seed], scores={"nmi": 0.1 * seed})
        write_run(tmp_path, "pets", "triplet", seed, better[seed], pool="split")
    s = summary_of(tmp_path, params(seeds=[0, 1, 2]))["pets"]
    assert s["classification"]["kmeans_acc"] == 0.5 and s["classification"]["kmeans_acc_seed_std"] == 0.25
    assert s["classification"]["nmi"] == 0.1 and s["classification"]["nmi_seed_std"] == 0.1
    c = s["comparisons"]["triplet_vs_classification"]
    assert c["difference"] == 0.25 and c["seed_std"] == 0.0
    # Every seed gains on exactly one of the 4 images, a different one on each seed.
    assert [c["per_seed"][str(k)]["difference"] for k in range(3)] == [0.25, 0.25, 0.25]
    # The same gain on every seed: the t-interval over seeds has no width, and the verdict is the method's.
    assert c["ci95"] == [0.25, 0.25] and c["interval"] == "seeds" and c["p_value"] == 0.0
    assert c["verdict"] == "triplet better than classification (95% CI over 3 seeds excludes 0)" and c["claim"]
    # Swapping the sides flips the sign and mirrors the interval.
    for seed in range(3):
        write_run(tmp_path, "pets", "classification", seed, better[seed])
        write_run(tmp_path, "pets", "triplet", seed, base[seed], pool="split")
    flipped = summary_of(tmp_path, params(seeds=[0, 1, 2]))["pets"]["comparisons"]["triplet_vs_classification"]
    assert flipped["difference"] == -0.25 and flipped["ci95"] == pytest.approx([-c["ci95"][1], -c["ci95"][0]], abs=0.1)


def test_the_study_number_only_beside_a_comparable_run(tmp_path):
    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4, study_labels=2)
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 0] * 2, pool="split", study_labels=2)
    s = summary_of(tmp_path, params(shots=15))["pets"]
    published = s["classification"]["published"]
    assert (published["correct"], published["n_test"]) == (123, 222) and published["kmeans_acc"] == pytest.approx(
        123 / 222, abs=1e-6)
    # 0.554 -/+ 1.96 * sqrt(0.554 * 0.446 / 222) = [0.489, 0.620]
    assert published["ci95"] == pytest.approx([0.489, 0.620], abs=0.01)
    assert "published" not in s["triplet"] and "triplet.pool: study" in s["triplet"]["published_note"]
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 0] * 2, pool="study", study_labels=2)
    s = summary_of(tmp_path, params(shots=15))["pets"]
    assert s["triplet"]["published"]["correct"] == 183
    generated = summary_of(tmp_path, params(shots=15, **{"split.source": "generated"}))["pets"]
    assert "split.source: generated" in generated["classification"]["published_note"]
    toy = summary_of(tmp_path, params(shots=15, **{"model.name": "test_convnext"}))["pets"]
    assert "not the study's model" in toy["classification"]["published_note"]
    assert "published" not in summary_of(tmp_path, params(shots=5, **{"split.source": "generated"}))["pets"][
        "classification"]


def test_the_study_number_is_comparable_only_with_runs_scored_the_study_way(tmp_path):
    """The same runs in the study's conditions: scored against the true labels, the study's number
    is "not comparable" (with why, in one line); scored the study's way, "comparable". Either way
    the line says how many of the study's test images were mislabelled (36 of 222 at 15 pets)."""
    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4)
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 0] * 2, pool="study")
    p = params(shots=15)
    s = summary_of(tmp_path, p)["pets"]
    for method in ("classification", "triplet"):
        assert "published" not in s[method] and "evaluate.labels: study" in s[method]["published_note"]
        assert "labels" not in s[method] and "mislabelled" not in s[method]
    text = report.markdown(summarise(tmp_path, p), p)
    line = next(x for x in text.splitlines() if x.startswith("- The study's number for classification"))
    assert line == ("- The study's number for classification, 55.41% (123/222; test images mislabelled by the "
                    "study's scoring: 36 of 222 (its plot: 18 breeds with 8 points, 18 with 4, one with 6; 6 each in "
                    "truth)), is not comparable with this run: this run was scored against each test image's own "
                    "label; the study's evaluator gave every image of a batch of four the first one's label "
                    "(evaluate.labels: study scores a run that way).")
    assert " is comparable" not in text and "| - |" in text

    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4, study_labels=2)
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 0] * 2, pool="study", study_labels=2)
    s = summary_of(tmp_path, p)["pets"]
    assert s["triplet"]["published"]["mislabelled"] == {
        "fewest": 36, "exact": True, "evidence": "its plot: 18 breeds with 8 points, 18 with 4, one with 6; 6 each in "
        "truth"}
    assert (s["triplet"]["labels"], s["triplet"]["mislabelled"]) == ("study", 2)
    text = report.markdown(summarise(tmp_path, p), p)
    assert "- The study's number for triplet, 82.43% (183/222; test images mislabelled by the study's scoring: 36 of " \
        "222 (its plot: 18 breeds with 8 points, 18 with 4, one with 6; 6 each in truth)), is comparable: this run " \
        "was scored the study's way too (evaluate.labels: study; 2 of its 8 test images mislabelled)." in text
    assert "| 82.43% [77.5, 87.4] (183/222; mislabelled: 36 of 222) |" in text and "not comparable" not in text

    write_run(tmp_path, "pets", "triplet", 1, [1, 1, 1, 0] * 2, pool="study")  # one seed scored the true way
    write_run(tmp_path, "pets", "classification", 1, [1, 0] * 4, study_labels=2)
    s = summary_of(tmp_path, params(shots=15, seeds=[0, 1]))["pets"]
    assert "published" in s["classification"] and "evaluate.labels: study" in s["triplet"]["published_note"]


def test_each_published_number_states_its_mislabelled_test_images(tmp_path):
    """Full DeFungi: a lower bound for triplet (a class with 160 points holds 12 of others), none seen
    for classification; full pets: not counted; 15-shot DeFungi: 4 of 30."""
    expected = {(0, "classification"): "scoring: none seen (its plot: 148 points per class",
                (0, "triplet"): "scoring: at least 12 of 740 (its plot: 144, 144, 144, 148, 160",
                (15, "classification"): "scoring: 4 of 30 (its plot: 8, 4, 8, 4, 6",
                (15, "triplet"): "scoring: 4 of 30 (its plot"}
    for (shots, method), words in expected.items():
        write_run(tmp_path, "defungi", "classification", 0, [1, 0] * 3)
        write_run(tmp_path, "defungi", "triplet", 0, [1, 0] * 3, pool="study")
        p = params(datasets=["defungi"], shots=shots)
        text = report.markdown(summarise(tmp_path, p), p)
        line = next(x for x in text.splitlines() if x.startswith(f"- The study's number for {method}"))
        assert words in line and "is not comparable" in line, line
    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4)
    write_run(tmp_path, "pets", "triplet", 0, [1, 0] * 4, pool="study")
    p = params()
    text = report.markdown(summarise(tmp_path, p), p)
    assert "88.97% (1,315/1,478; test images mislabelled by the study's scoring: not counted (its two 1,478-point " \
        "plots were not read here)), is not comparable" in text


def test_defungi_low_data_published_interval_is_that_of_30_images(tmp_path):
    write_run(tmp_path, "defungi", "classification", 0, [1, 0] * 3, study_labels=0)
    write_run(tmp_path, "defungi", "triplet", 0, [1, 0] * 3, pool="study", study_labels=0)
    s = summary_of(tmp_path, params(datasets=["defungi"], shots=15))["defungi"]
    assert (s["classification"]["published"]["correct"], s["triplet"]["published"]["correct"]) == (17, 20)
    lo, hi = s["classification"]["published"]["ci95"]
    assert lo == pytest.approx(12 / 30, abs=1 / 30) and hi == pytest.approx(22 / 30, abs=1 / 30)


def test_leaks_are_shown_beside_the_run_and_said_in_words(tmp_path):
    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4,
              leak={**no_leak(), "test_in_train": 3})
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 0] * 2, pool="study",
              leak={**no_leak(), "test_in_pool": 1478, "groups_across": 2})
    p = params()
    s = summary_of(tmp_path, p)
    assert s["pets"]["classification"]["clean"] is False and s["pets"]["triplet"]["leak"]["test_in_pool"] == 1478
    text = report.markdown(summarise(tmp_path, p), p)
    assert "| **3 test in lists** |" in text and "**1,478 test in pool, 2 groups across**" in text
    assert "- **triplet is not clean**: 1,478 test images were in the pool its triplets were drawn from; 2 source" \
        in text
    assert "- **classification is not clean**: 3 of its 8 test images were also in its training or validation" in text


def test_runs_scored_on_other_test_images_are_refused(tmp_path):
    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4)
    write_run(tmp_path, "pets", "triplet", 0, [1, 0] * 5, pool="split")
    with pytest.raises(PipelineError, match="other test images"):
        summary_of(tmp_path, params())


def test_the_comparison_sentence_names_methods_as_the_table_does(tmp_path):
    """A randomly initialised `pretrained` is "untrained" in the table, and in its sentence too. The
    primary pair (triplet, classification) was not run: every comparison is secondary, and said so."""
    for seed in range(3):
        write_run(tmp_path, "pets", "pretrained", seed, [0, 0, 0, 0, 0, 0, 1, 1])
        write_run(tmp_path, "pets", "classification", seed, [1] * 8)
    p = params(methods=["pretrained", "classification"], seeds=[0, 1, 2], **{"model.pretrained": False})
    text = report.markdown(summarise(tmp_path, p), p)
    assert "| untrained |" in text
    assert "**No primary question here**: the primary comparison (primary: triplet minus classification in " \
        "params.yaml) was not run here (triplet not in methods)" in text
    line = next(x for x in text.splitlines() if x.startswith("- secondary: untrained vs classification, raw"))
    assert "untrained worse than classification (Holm-adjusted p = 0 over 2 secondary comparisons)" in line
    assert "pretrained" not in line, line


def test_the_l2_view_is_summarised_and_compared_as_the_raw_view_is_from_its_own_columns(tmp_path):
    """Both views are one shape (statistics per method, a comparison per method) and each is
    computed from its own per-image column; the JSON keeps the raw view at the top, L2 under "l2"."""
    write_run(tmp_path, "pets", "classification", 0, [1, 1, 1, 1, 1, 1, 0, 0], correct_l2=[0] * 8)
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 1, 1, 1, 1, 0], pool="split", correct_l2=[1] * 8)
    p = params()
    whole = summarise(tmp_path, p)
    summary = whole["pets"]
    raw, l2 = summary.methods["triplet"].views["raw"], summary.methods["triplet"].views["l2"]
    assert (raw.mean["kmeans_acc"], raw.kmeans_acc_ci95) == (0.875, [0.625, 1.0])
    assert (l2.mean["kmeans_acc"], l2.kmeans_acc_ci95) == (1.0, [1.0, 1.0])
    compared = summary.comparisons["triplet_vs_classification"]
    assert (compared["raw"].difference, compared["raw"].sign) == (0.125, 0)
    assert (compared["l2"].difference, compared["l2"].ci95, compared["l2"].sign) == (1.0, [1.0, 1.0], 1)
    s = summary_json({"pets": summary})["pets"]
    assert s["triplet"]["kmeans_acc"] == 0.875 and s["triplet"]["l2"]["kmeans_acc"] == 1.0
    assert set(s["triplet"]["l2"]) == {*METRICS, "kmeans_acc_ci95", "kmeans_acc_chance"}  # one seed: no spreads
    c = s["comparisons"]["triplet_vs_classification"]
    assert c["difference"] == 0.125 and c["l2"]["difference"] == 1.0 and c["l2"]["ci95"] == [1.0, 1.0]
    text = report.markdown(whole, p)
    line = next(x for x in text.splitlines() if x.startswith("**Primary question**"))
    assert "on raw embeddings: +12.5 points, image-level 95% CI [0.0, 37.5]" in line
    line = next(x for x in text.splitlines() if x.startswith("- secondary: triplet vs classification, L2"))
    assert "+100.0 points, image-level 95% CI [100.0, 100.0]" in line
    row = next(x for x in text.splitlines() if x.startswith("| triplet |"))
    assert "| 100.0% [100.0, 100.0]; chance 12.5%, p95 25.0% |" in row
    assert row.startswith("| triplet | 87.5% [62.5, 100.0]; chance 12.5%, p95 25.0% |")


def test_the_markdown_shows_the_numbers_the_json_holds(tmp_path):
    """Numbers are rounded once, as written: the table's 1/3 is the JSON's 0.333333."""
    write_run(tmp_path, "pets", "classification", 0, [1, 0, 0], scores={"nmi": 1 / 3})
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 0], pool="split")
    p = params()
    whole = summarise(tmp_path, p)
    summary = whole["pets"]
    assert summary.methods["classification"].views["raw"].mean["nmi"] == 0.333333
    assert summary_json({"pets": summary})["pets"]["classification"]["nmi"] == 0.333333
    assert "| classification | 33.3% [0.0, 100.0]; chance 12.5%, p95 25.0% | 0.333 |" in report.markdown(whole, p)


def accuracies_to_correct(accuracies, n=20):
    """Per-image right/wrong vectors of n images with these accuracies (multiples of 1/n)."""
    return [[1] * round(a * n) + [0] * (n - round(a * n)) for a in accuracies]


def test_the_method_level_interval_is_the_t_interval_over_per_seed_differences(tmp_path):
    from scipy.stats import t

    base = [0.50, 0.55, 0.45, 0.60]
    better = [0.65, 0.60, 0.70, 0.70]  # per-seed differences +0.15, +0.05, +0.25, +0.10
    for seed, (a, b) in enumerate(zip(better, base, strict=True)):
        write_run(tmp_path, "pets", "classification", seed, accuracies_to_correct([b])[0])
        write_run(tmp_path, "pets", "triplet", seed, accuracies_to_correct([a])[0], pool="split")
    c = summary_of(tmp_path, params(seeds=[0, 1, 2, 3]))["pets"]["comparisons"]["triplet_vs_classification"]
    d = [a - b for a, b in zip(better, base, strict=True)]
    mean = sum(d) / 4
    sd = (sum((x - mean) ** 2 for x in d) / 3) ** 0.5
    half = t.ppf(0.975, 3) * sd / 4 ** 0.5  # 3.182 * 0.0854 / 2 = 0.136
    assert c["difference"] == pytest.approx(0.1375, abs=1e-6)
    assert c["ci95"] == pytest.approx([mean - half, mean + half], abs=1e-6)
    assert c["ci95"][0] > 0 and c["sign"] == 1 and c["seed_std"] == pytest.approx(sd, abs=1e-6)
    assert c["verdict"] == "triplet better than classification (95% CI over 4 seeds excludes 0)"
    # the per-seed image-level intervals stay, each seed's own
    assert [c["per_seed"][str(s)]["difference"] for s in range(4)] == pytest.approx(d, abs=1e-6)


def test_holm_over_three_secondary_comparisons_worked_example(tmp_path):
    """classification, triplet, supcon on 3 seeds: 4 comparisons, of which triplet - classification
    on raw embeddings is the primary one and the other three secondary, Holm-adjusted together.

    Per-seed differences (20 test images): triplet L2 +0.05, +0.15, 0 (p = 0.270); supcon raw
    +0.30, +0.35, +0.30 (p = 0.0028); supcon L2 -0.05, +0.10, +0.05 (p = 0.529). Holm: sorted
    0.0028 x 3 = 0.0083; 0.270 x 2 = 0.539; 0.529 x 1 = 0.529, raised to the running maximum 0.539.
    Only supcon raw is significant at 0.05."""
    from scipy.stats import ttest_1samp

    acc = {"classification": ([0.5] * 3, [0.5] * 3), "triplet": ([0.7, 0.75, 0.8], [0.55, 0.65, 0.5]),
           "supcon": ([0.8, 0.85, 0.8], [0.45, 0.6, 0.55])}
    for method, (raw, l2) in acc.items():
        for seed in range(3):
            write_run(tmp_path, "pets", method, seed, accuracies_to_correct([raw[seed]])[0],
                      correct_l2=accuracies_to_correct([l2[seed]])[0], pool="split" if method != "classification"
                      else None)
    p = params(methods=["classification", "triplet", "supcon"], seeds=[0, 1, 2])
    s = summary_of(tmp_path, p)["pets"]["comparisons"]
    entries = {"triplet l2": s["triplet_vs_classification"]["l2"], "supcon raw": s["supcon_vs_classification"],
               "supcon l2": s["supcon_vs_classification"]["l2"]}
    naive_p = {name: ttest_1samp([a - 0.5 for a in acc[name.split()[0]][name.endswith("l2")]], 0).pvalue
               for name in entries}
    assert naive_p == pytest.approx({"triplet l2": 0.2697, "supcon raw": 0.00276, "supcon l2": 0.5286}, abs=1e-4)
    order = sorted(naive_p, key=naive_p.get)
    adjusted, running = {}, 0.0
    for i, name in enumerate(order):  # Holm by hand: (m - i) x p, running maximum, at most 1
        running = max(running, min(1.0, (3 - i) * naive_p[name]))
        adjusted[name] = running
    assert adjusted["supcon l2"] == adjusted["triplet l2"]  # the running maximum is at work
    assert s["triplet_vs_classification"]["role"] == "primary" and "p_holm" not in s["triplet_vs_classification"]
    for name, c in entries.items():
        assert c["role"] == "secondary" and c["comparisons"] == 3
        assert c["p_value"] == pytest.approx(naive_p[name], abs=1e-6)
        assert c["p_holm"] == pytest.approx(adjusted[name], abs=1e-6)
    assert entries["supcon raw"]["sign"] == 1 and entries["supcon raw"]["claim"] is True
    assert entries["supcon raw"]["verdict"] == (
        "supcon better than classification (Holm-adjusted p = 0.00828 over 3 secondary comparisons)")
    assert entries["triplet l2"]["sign"] == 0 and entries["supcon l2"]["sign"] == 0
    # Bonferroni at 1 - 0.05 / 3 is wider than the 95% interval
    ci, wide = entries["supcon raw"]["ci95"], entries["supcon raw"]["ci_simultaneous"]
    assert wide[0] < ci[0] and wide[1] > ci[1]
    text = report.markdown(summarise(tmp_path, p), p)
    lines = text.splitlines()
    assert next(x for x in lines if x.startswith("**Primary question**")).startswith(
        "**Primary question**: triplet minus classification, K-means accuracy on raw embeddings: +25.0 points")
    secondary = [x for x in lines if x.startswith("- secondary: ")]
    assert [x.split(":")[1] for x in secondary] == [" triplet vs classification, L2-normalised embeddings",
                                                    " supcon vs classification, raw embeddings",
                                                    " supcon vs classification, L2-normalised embeddings"]
    assert "Holm-adjusted p = 0.539" in secondary[0] and "Holm-adjusted p = 0.539" in secondary[2]


def test_no_claim_rests_on_an_accuracy_inside_its_chance_band(tmp_path):
    """triplet beats classification by 0.2 on every seed, but on seed 1 its accuracy (0.45) is at
    or below its chance level's 95th percentile (0.45): no "better than" claim; classification
    losing inside its own band would not matter."""
    for seed, (a, b) in enumerate([(0.7, 0.5), (0.45, 0.25), (0.6, 0.4)]):
        write_run(tmp_path, "pets", "classification", seed, accuracies_to_correct([b])[0],
                  chance={"mean": 0.3, "p95": 0.45})
        write_run(tmp_path, "pets", "triplet", seed, accuracies_to_correct([a])[0], pool="split",
                  chance={"mean": 0.3, "p95": 0.45 if seed == 1 else 0.4})
    p = params(seeds=[0, 1, 2])
    s = summary_of(tmp_path, p)["pets"]
    c = s["comparisons"]["triplet_vs_classification"]
    assert c["ci95"] == [0.2, 0.2] and c["sign"] == 1 and c["claim"] is False
    assert c["blocked_by_chance_seeds"] == [1] and "better than" not in c["verdict"]
    assert c["verdict"].startswith("no claim: triplet's K-means accuracy is inside its chance band")
    assert s["triplet"]["kmeans_acc_chance"] == {"mean": 0.3, "p95": 0.416667, "inside_band_seeds": [1]}
    assert s["classification"]["kmeans_acc_chance"]["inside_band_seeds"] == [1, 2]
    text = report.markdown(summarise(tmp_path, p), p)
    assert "triplet better than" not in text
    assert "- triplet's K-means accuracy on raw embeddings is inside its chance band (at or below the chance " \
        "level's 95th percentile) on seed(s) 1: no \"better than\" claim rests on it." in text
    # above the band on every seed: the claim is made
    write_run(tmp_path, "pets", "triplet", 1, accuracies_to_correct([0.45])[0], pool="split",
              chance={"mean": 0.3, "p95": 0.44})
    c = summary_of(tmp_path, p)["pets"]["comparisons"]["triplet_vs_classification"]
    assert c["claim"] is True and c["verdict"].startswith("triplet better than classification")


def test_measured_coverage_is_printed_beside_the_intervals_under_090(tmp_path):
    """docs/coverage.json: the image-level K-means interval covers 0.79 at n=30 (the closest
    measured setting to 8 test images), the one-seed paired interval 0.89 at n=360; the t-interval
    over 3 seeds 0.97 (nothing printed)."""
    coverage = report.read_coverage()
    write_run(tmp_path, "pets", "classification", 0, [1, 1, 1, 1, 1, 1, 0, 0])
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 1, 1, 1, 1, 0], pool="split")
    p = params()
    runs = report.read_runs(tmp_path / "metrics", tmp_path / "predictions", p.datasets, p.methods, p.seeds)
    whole = summarise_runs(runs, p, coverage)
    text = report.markdown(whole, p)
    row = next(x for x in text.splitlines() if x.startswith("| triplet |"))
    assert row.startswith("| triplet | 87.5% [62.5, 100.0] (measured coverage 0.79 at n=30); chance")
    line = next(x for x in text.splitlines() if x.startswith("**Primary question**"))
    assert "image-level 95% CI [0.0, 37.5] (two trained models, one seed each), measured coverage 0.89 at n=360" \
        in line
    assert summary_json(whole)["pets"]["triplet"]["kmeans_acc_ci95_coverage"] == {"coverage": 0.79, "at": "n=30"}
    for seed in (1, 2):
        write_run(tmp_path, "pets", "classification", seed, [1, 1, 1, 1, 1, 0, 0, 0])
        write_run(tmp_path, "pets", "triplet", seed, [1, 1, 1, 1, 1, 1, 1, 0], pool="split")
    p = params(seeds=[0, 1, 2])
    runs = report.read_runs(tmp_path / "metrics", tmp_path / "predictions", p.datasets, p.methods, p.seeds)
    text = report.markdown(summarise_runs(runs, p, coverage), p)
    line = next(x for x in text.splitlines() if x.startswith("**Primary question**"))
    assert "over 3 seeds (t, 2 df):" in line and "measured coverage" not in line
    # the table's interval over 3 seeds and images: the two-stage bootstrap's 0.89 at 3 seeds
    assert "(measured coverage 0.89 at 3 seeds)" in text


def test_the_report_says_which_rule_kept_each_runs_epoch(tmp_path):
    for method, rule in (("classification", "loss"), ("triplet", "val_kmeans")):
        write_run(tmp_path, "pets", method, 0, [1, 0] * 4, scores={"select": rule})
    write_run(tmp_path, "pets", "pretrained", 0, [1, 0] * 4)  # trains nothing: no rule
    p = params(methods=["classification", "triplet", "pretrained"])
    s = summary_of(tmp_path, p)
    assert (s["pets"]["classification"]["select"], s["pets"]["triplet"]["select"]) == ("loss", "val_kmeans")
    assert "select" not in s["pets"]["pretrained"]
    text = report.markdown(summarise(tmp_path, p), p)
    assert ("Epoch kept (`train.select`): classification: `loss` (each method's own lowest validation loss); "
            "triplet: `val_kmeans` (the best K-means accuracy on the validation images' embeddings); "
            "pretrained: no training.") in text


def test_the_report_shows_the_tuned_values_and_the_searchs_best_and_worst_scores(tmp_path):
    for method in ("classification", "triplet"):
        write_run(tmp_path, "pets", method, 0, [1, 0] * 4, scores={"select": "loss"})
    p = params()
    records = {
        ("pets", "classification"): {"method": "classification", "trials": 0,
                                     "values": {"train.lr": 5e-5, "train.weight_decay": 1e-6}},
        ("pets", "triplet"): {"method": "triplet", "trials": 8, "metric": "val_kmeans", "epochs": 10, "best": 0.875,
                              "worst": 0.5, "values": {"train.lr": 1.234e-4, "train.weight_decay": 2e-7,
                                                       "triplet.margin": 0.4}, "search": []},
    }
    from stages.lib.summary import with_tuning

    whole = with_tuning(summarise(tmp_path, p), records)
    s = summary_json(whole)
    assert "tuned" not in s["pets"]["classification"]  # no search: nothing to show
    assert s["pets"]["triplet"]["tuned"] == {"trials": 8, "metric": "val_kmeans", "epochs": 10, "best": 0.875,
                                             "worst": 0.5, "values": records["pets", "triplet"]["values"]}
    text = report.markdown(whole, p)
    assert ("Tuned (`tune`: 8 trials of 10 epochs per method, each scored on the validation images; the values "
            "trained with): triplet: `train.lr` 0.000123, `train.weight_decay` 2e-07, `triplet.margin` 0.4 "
            "(validation val_kmeans of its finished trials: best 0.875, worst 0.500).") in text
    assert "Tuned" not in report.markdown(summarise(tmp_path, p), p)  # the default: no line
