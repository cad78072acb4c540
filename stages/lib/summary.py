"""The report's numbers: every run of a dataset x method over its seeds, with its uncertainty, its
chance level, its leaks, the study's number where comparable, and paired comparisons with the
baseline: one primary, the others secondary (issue 20).

Verdicts: a method-level statement ("A better than B") comes only from training seeds: the
t-interval over the per-seed paired differences (`stats.seed_interval`) for the primary
comparison (`params.primary`), Holm-adjusted p-values and Bonferroni intervals over the
secondary ones (`stats.secondary`). With one seed every comparison gives its image-level
interval, which compares two trained models, and makes no method-level claim. No claim rests on
an accuracy inside its chance band (at or below the 95th percentile of the chance level the
evaluate stage wrote for that run, `kmeans_acc_chance`). Intervals whose measured coverage
(docs/coverage.json, `scripts/coverage.py`) is below its threshold in the closest measured
setting carry that coverage (`Coverage`).

Pure functions over `Run`s (no files read or written here). Each view of the embeddings (raw and
L2-normalised, `VIEWS`) gets the same shape: a `ViewStats` per method and a `Comparison` per
method against the baseline. The records themselves, and how they are laid out in
`report/summary.json`, are in stages/lib/summary_records.py. Floats are rounded as written
(`rounded`) when a summary is built, so the markdown and the figures show exactly the numbers in
the JSON.

To add a number: a field on the record that owns it (a view's, a method's or a dataset's, in
summary_records.py), filled in `summarise_runs` here, written in that class's `to_json`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.atomic import rounded
from stages.lib.errors import PipelineError
from stages.lib.leaks import LEAK_KEYS
from stages.lib.published import incomparable, published
from stages.lib.stats import CONFIDENCE, accuracy_ci, paired_difference, secondary, seed_interval, summarise
from stages.lib.summary_records import (
    METRICS,
    VIEWS,
    Chance,
    Comparison,
    Coverage,
    DatasetSummary,
    Difference,
    MethodSummary,
    Run,
    StudyNumber,
    ViewStats,
)

if TYPE_CHECKING:
    pass

def baseline_of(methods: list[str]) -> str:
    """The method every other is compared with: classification where it runs, else the first."""
    return "classification" if "classification" in methods else methods[0]


ONE_SEED = ("one training seed: this compares two trained models on these test images, not two methods; "
            "no method-level claim")
ALPHA = 1 - CONFIDENCE


def verdict(c: Comparison, name: dict[str, str] | None = None) -> str:
    """The verdict of a comparison in words, the methods called by `name` (default: their own names)."""
    name = name or {}
    a, b = name.get(c.method, c.method), name.get(c.than, c.than)
    if c.seeds == 1:
        return ONE_SEED
    test = (f"95% CI over {c.seeds} seeds" if c.role == "primary"
            else f"Holm-adjusted p = {c.p_holm:.3g} over {c.comparisons} secondary comparisons")
    if c.sign == 0:
        return f"no difference shown ({test}{' includes 0' if c.role == 'primary' else ''})"
    if c.blocked_by_chance:
        winner = a if c.sign > 0 else b
        seeds = ", ".join(str(s) for s in c.blocked_by_chance)
        return (f"no claim: {winner}'s K-means accuracy is inside its chance band (at or below the chance level's "
                f"95th percentile) on seed(s) {seeds}")
    if c.role == "primary":
        test += " excludes 0"
    return f"{a} {'better' if c.sign > 0 else 'worse'} than {b} ({test})"


def _correct(runs: list[Run], view: str) -> np.ndarray:
    """Seeds x images matrix of per-image right (1) / wrong (0), in the runs' (seed) order."""
    return np.stack([r.correct(view) for r in runs])


def chance_of(runs: list[Run], view: str) -> Chance:
    """The chance level of K-means accuracy over the runs' seeds, and the seeds inside their chance band."""
    levels = []
    for r in runs:
        level = (r.scores["l2"] if view == "l2" else r.scores).get("kmeans_acc_chance")
        if level is None:
            raise PipelineError(f"{r.dataset} {r.method} seed {r.seed}: its metrics file has no kmeans_acc_chance "
                                f"({view}); re-run the evaluate stage (dvc repro)")
        levels.append(level)
    inside = [r.seed for r, level in zip(runs, levels, strict=True) if r.metric(view, "kmeans_acc") <= level["p95"]]
    return Chance(rounded(float(np.mean([lv["mean"] for lv in levels]))),
                  rounded(float(np.mean([lv["p95"] for lv in levels]))), inside)


def view_stats(runs: list[Run], view: str, resamples: int, seed: int, coverage: dict | None = None) -> ViewStats:
    """Mean over seeds of each metric (and its seed spread), the bootstrap CI of K-means accuracy
    (and its measured coverage, from the `coverage` table, where below the threshold) and its chance level."""
    mean, spread = {}, {}
    for metric in METRICS:
        s = summarise([r.metric(view, metric) for r in runs])
        mean[metric] = rounded(s["mean"])
        if s["std"] is not None:
            spread[metric] = rounded(s["std"])
    correct = _correct(runs, view)
    ci = accuracy_ci(correct, resamples=resamples, seed=seed)
    measured = (kmeans_coverage(coverage, correct.shape[1]) if len(runs) == 1
                else bootstrap_coverage(coverage, len(runs)))
    return ViewStats(mean, spread, rounded(ci), chance_of(runs, view), measured)


# --- Measured coverage (docs/coverage.json, written by scripts/coverage.py) ---

def _below(table: dict, coverage: float, where: str) -> Coverage | None:
    return Coverage(rounded(coverage, 2), where) if coverage < table["threshold"] else None


def kmeans_coverage(table: dict | None, n_test: int) -> Coverage | None:
    """One run's image-level K-means interval: the measured setting whose test-set size is closest
    to `n_test` (on a log scale)."""
    if not table:
        return None
    best = min(table["kmeans"].values(), key=lambda r: abs(np.log(r["n_test"] / n_test)))
    return _below(table, best["image_level"]["coverage"], f"n={best['n_test']}")


def model_pair_coverage(table: dict | None, n_test: int) -> Coverage | None:
    """One seed's image-level paired interval (two trained models): the closest `paired_model` setting."""
    if not table:
        return None
    best = min(table["paired_model"].values(), key=lambda r: abs(np.log(r["n_test"] / n_test)))
    return _below(table, best["image_level"]["coverage"], f"n={best['n_test']}")


def _closest_seeds(table: dict, seeds: int, kind: str) -> tuple[int, float] | None:
    measured = [(int(s), r[kind]["coverage"]) for setting in table["paired"].values()
                for s, r in setting["seeds"].items() if r.get(kind)]
    return min(measured, key=lambda m: (abs(m[0] - seeds), m[0])) if measured else None


def seed_coverage(table: dict | None, seeds: int) -> Coverage | None:
    """The t-interval over seeds (`stats.seed_interval`): the measured seed count closest to `seeds`."""
    closest = _closest_seeds(table, seeds, "seed_t") if table else None
    return _below(table, closest[1], f"{closest[0]} seeds") if closest else None


def bootstrap_coverage(table: dict | None, seeds: int) -> Coverage | None:
    """The two-stage bootstrap over seeds and images (the table's interval with several seeds): the
    measured seed count closest to `seeds` (measured for a paired difference, the nearest setting there is)."""
    closest = _closest_seeds(table, seeds, "bootstrap") if table else None
    return _below(table, closest[1], f"{closest[0]} seeds") if closest else None


# --- Comparisons ---

def _difference(result: dict) -> Difference:
    return Difference(rounded(result["difference"]), rounded(result["ci95"]), result["sign"])


def _blocked(sign: int, chance: dict[str, Chance], method: str, than: str) -> list[int]:
    """The seeds on which the comparison's winner is inside its chance band (none without a winner)."""
    if sign == 0:
        return []
    return chance[method if sign > 0 else than].inside_band


def compare(runs: list[Run], base_runs: list[Run], view: str, resamples: int, seed: int, *, role: str = "secondary",
            tested: dict | None = None, chance: dict[str, Chance] | None = None,
            coverage: dict | None = None) -> Comparison:
    """`runs` (one method, by seed) minus `base_runs` (the other, the same seeds) on one view.

    `tested`: this comparison's entry of `stats.secondary` (a secondary comparison with several
    seeds: its Holm-adjusted p-value and Bonferroni interval); `chance`: each method's chance level
    on this view (a winner inside its band gets no claim); `coverage`: the measured coverage table."""
    a, b = _correct(runs, view), _correct(base_runs, view)
    method, than = runs[0].method, base_runs[0].method
    per_seed = {r.seed: _difference(paired_difference(a[i], b[i], resamples=resamples, seed=seed))
                for i, r in enumerate(runs)}
    chance = chance or {}
    if len(runs) == 1:
        d = per_seed[runs[0].seed]
        out = Comparison(method, than, view, role, 1, d.difference, d.ci95, "images", d.sign, False, "",
                         per_seed, coverage=model_pair_coverage(coverage, a.shape[1]))
        return _with_verdict(out)
    result = seed_interval(a.mean(axis=1) - b.mean(axis=1))
    sign = result["sign"]
    extra: dict = {}
    if role == "secondary":
        if tested is None:
            raise ValueError("a secondary comparison with several seeds needs its stats.secondary entry")
        sign = tested["sign"]
        extra = {"p_holm": rounded(tested["p_holm"]), "ci_simultaneous": rounded(tested["ci_simultaneous"]),
                 "comparisons": tested["comparisons"]}
    blocked = _blocked(sign, chance, method, than) if chance else []
    out = Comparison(method, than, view, role, len(runs), rounded(result["difference"]), rounded(result["ci95"]),
                     "seeds", sign, sign != 0 and not blocked, "", per_seed, seed_std=rounded(result["seed_std"]),
                     p_value=rounded(result["p_value"]), coverage=seed_coverage(coverage, len(runs)),
                     blocked_by_chance=blocked, **extra)
    return _with_verdict(out)


def one_protocol(runs: list[Run]) -> None:
    """Refuse a report whose runs were not all scored under one protocol (`split.classes`, and under
    unseen the same halves of each dataset's classes): a seen-class and an unseen-class accuracy
    answer different questions, so no comparison, table or chart may put them side by side."""
    kinds = {r.classes for r in runs}
    if len(kinds) > 1:
        example = {r.classes: r for r in runs}
        raise PipelineError(
            "the runs mix seen and unseen classes (e.g. " + ", ".join(
                f"{r.dataset} {r.method} seed {r.seed}: {kind}" for kind, r in sorted(example.items()))
            + "); a report compares runs of one protocol: re-run dvc repro so that every run uses split.classes of "
            "params.yaml"
        )
    halves: dict[str, tuple] = {}
    for r in runs:
        if r.protocol is None:
            continue
        mine = (tuple(r.protocol["train_classes"]), tuple(r.protocol["test_classes"]))
        if halves.setdefault(r.dataset, mine) != mine:
            raise PipelineError(f"{r.dataset}: {r.method} seed {r.seed} was trained on other classes than the "
                                "dataset's other runs; re-run dvc repro so that every run uses the current split")


def _with_verdict(c: Comparison) -> Comparison:
    return replace(c, verdict=verdict(c))


def pairs_of(methods: list[str], base: str, primary) -> tuple[list[tuple[str, str]], str | None]:
    """The compared pairs (A, B): every method against the baseline, with the primary pair in its
    own direction (added when it is not one of them); and why there is no primary comparison, if so."""
    pairs = [(m, base) for m in methods if m != base]
    better, than = primary.better, primary.than
    missing = [m for m in (better, than) if m not in methods]
    if missing:
        return pairs, (f"the primary comparison (primary: {better} minus {than} in params.yaml) was not run here "
                       f"({', '.join(missing)} not in methods): every comparison below is secondary")
    if (than, better) in pairs:
        pairs[pairs.index((than, better))] = (better, than)
    elif (better, than) not in pairs:
        pairs.insert(0, (better, than))
    return pairs, None


def scored_the_study_way(runs: list[Run]) -> int | None:
    """The mislabelled test images of runs scored the study's way (their metrics say
    `"labels": "study"`, `evaluate.labels`), or None when any was scored against the true labels."""
    if not runs or any(r.scores.get("labels") != "study" for r in runs):
        return None
    return max(int(r.scores["mislabelled"]) for r in runs)


def _study_number(dataset: str, method: str, pool: str | None, params,
                  labels: bool | str = True, classes: str = "seen") -> tuple[StudyNumber | None, str | None]:
    """The study's number beside this run with its CI, or why there is none (None, None: it published
    none). `labels`: how the run was scored (`evaluate.labels`, read from its metrics); `classes`: its
    protocol (`split.classes`, read from its metrics)."""
    paper = published(dataset, method, params.shots)
    if paper is None:
        return None, None
    reason = incomparable(
        method, split_source=params.split.source, model_name=params.model.name,
        pretrained=params.model.pretrained, image_size=params.model.image_size, triplet_pool=pool, labels=labels,
        classes=classes,
    )
    if reason is not None:
        return None, reason
    ones = np.zeros(paper.n_test)
    ones[: paper.correct] = 1
    ci = accuracy_ci(ones, resamples=params.evaluate.bootstrap_resamples, seed=params.evaluate.bootstrap_seed)
    return StudyNumber(rounded(paper.accuracy), paper.correct, paper.n_test, rounded(ci),
                       paper.mislabelled.to_json()), None


def tuning_summary(record: dict) -> dict | None:
    """What the report shows of a tuned file (the tune stage's): the values trained with, the number of
    trials, the metric, and the best and worst validation score of the finished trials; None when
    nothing was searched (`tune.trials: 0`, or a method that does not train)."""
    if not record.get("trials") or "best" not in record:
        return None
    return {k: record[k] for k in ("trials", "metric", "epochs", "values", "best", "worst")}


def with_tuning(summary: dict[str, DatasetSummary], records: dict[tuple[str, str], dict]) -> dict[str, DatasetSummary]:
    """`summary` with each method's `tuning_summary` of its tuned file (`records[dataset, method]`)."""
    out = {}
    for name, data in summary.items():
        methods = {m: replace(s, tuned=tuning_summary(records.get((name, m), {}))) for m, s in data.methods.items()}
        out[name] = replace(data, methods=methods)
    return out


def select_of(runs: list[Run]) -> str | None:
    """The rule that kept the epoch of `runs` (one method's seeds), as their metrics record it: one
    rule, or the rules joined with ` and ` where seeds differ; None where no run trained."""
    rules = sorted({str(r.scores["select"]) for r in runs if r.scores.get("select") is not None})
    return " and ".join(rules) or None


def budget_used(group: list[Run]) -> dict | None:
    """The budget a method's runs used, per seed (None: trained by epochs, or not trained)."""
    records = [r.scores.get("budget") for r in group]
    if not any(records):
        return None
    first = next(r for r in records if r)
    return {"kind": first["kind"], "amount": first["amount"],
            "steps": [int(r["steps"]) if r else 0 for r in records],
            "images": [int(r["images"]) if r else 0 for r in records]}


def summarise_runs(runs: list[Run], params, coverage: dict | None = None) -> dict[str, DatasetSummary]:
    """Per dataset of `params.datasets`: per method its statistics on each view, chance level, leaks
    and the study's number, then the comparisons (`pairs_of`): the primary one (`params.primary`)
    and the secondary ones with Holm's adjustment over the dataset's secondary comparisons.
    `coverage`: docs/coverage.json's table (None: no measured coverage printed)."""
    methods = params.methods
    resamples, boot_seed = params.evaluate.bootstrap_resamples, params.evaluate.bootstrap_seed
    primary = params.primary
    base = baseline_of(methods)
    one_protocol(runs)
    summary = {}
    for dataset in params.datasets:
        by_method = {m: sorted((r for r in runs if r.dataset == dataset and r.method == m), key=lambda r: r.seed)
                     for m in methods}
        reference = by_method[methods[0]][0].rows
        for method, group in by_method.items():
            for r in group:
                if not np.array_equal(r.rows, reference):
                    raise PipelineError(
                        f"{dataset}: {method} seed {r.seed} was scored on other test images than "
                        f"{methods[0]}; re-run dvc repro so that every run uses the current split"
                    )
        entries = {}
        for method, group in by_method.items():
            pool = group[0].scores.get("triplet_pool")
            mislabelled = scored_the_study_way(group)
            study, note = _study_number(dataset, method, pool, params, "study" if mislabelled is not None else True,
                                        group[0].classes)
            entries[method] = MethodSummary(
                method=method, seeds=len(group), shots=params.shots, n_test=int(len(reference)),
                views={view: view_stats(group, view, resamples, boot_seed, coverage) for view in VIEWS},
                leak={k: max(int(r.scores["leak"].get(k, 0)) for r in group) for k in LEAK_KEYS},
                triplet_pool=pool, published=study, published_note=note, select=select_of(group),
                paper=published(dataset, method, params.shots), mislabelled=mislabelled, protocol=group[0].protocol,
                budget=budget_used(group),
            )
        pairs, note = pairs_of(methods, base, primary)
        role = {(a, b, view): "primary" if note is None and (a, b, view) == (primary.better, primary.than,
                                                                             primary.view) else "secondary"
                for a, b in pairs for view in VIEWS}
        differences = {f"{a}_vs_{b}/{view}": _correct(by_method[a], view).mean(axis=1)
                       - _correct(by_method[b], view).mean(axis=1)
                       for (a, b, view), r in role.items() if r == "secondary"}
        tested = secondary(differences, alpha=ALPHA) if differences else {}
        comparisons = {
            f"{a}_vs_{b}": {view: compare(
                by_method[a], by_method[b], view, resamples, boot_seed, role=role[a, b, view],
                tested=tested.get(f"{a}_vs_{b}/{view}"), coverage=coverage,
                chance={m: entries[m].views[view].chance for m in (a, b)})
                for view in VIEWS}
            for a, b in pairs
        }
        summary[dataset] = DatasetSummary(dataset, base, entries, comparisons, note)
    return summary
