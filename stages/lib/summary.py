"""The report's numbers: every run of a dataset x method over its seeds, with its uncertainty, its
leaks, the study's number where comparable, and paired comparisons with the baseline.

Pure functions over `Run`s (no files read or written here). Each view of the embeddings (raw and
L2-normalised, `VIEWS`) gets the same shape: a `ViewStats` per method and a `Comparison` per
method against the baseline. `summary_json` lays them out as `report/summary.json` has always
had them (the raw view's numbers at the top of each entry, the L2 ones under `"l2"`), so that
`dvc metrics diff` lines up across versions. Floats are rounded as written (`rounded`) when a
summary is built, so the markdown and the figures show exactly the numbers in the JSON.

To add a number: a field on the dataclass that owns it (a view's, a method's or a dataset's),
filled in `summarise_runs`, written in that class's `to_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.atomic import rounded
from stages.lib.errors import PipelineError
from stages.lib.leaks import LEAK_KEYS, is_clean
from stages.lib.published import incomparable, published
from stages.lib.stats import accuracy_ci, paired_difference, summarise

if TYPE_CHECKING:
    import pandas as pd

# Metrics in the table, in order, with their headings.
METRICS = {
    "kmeans_acc": "K-means acc",
    "nmi": "NMI",
    "ari": "ARI",
    "precision_at_1": "P@1",
    "map_at_r": "MAP@R",
    "knn_acc": "k-NN acc",
}
PERCENT = {"kmeans_acc", "precision_at_1", "map_at_r", "knn_acc"}
VIEWS = {"raw": "raw embeddings", "l2": "L2-normalised embeddings"}


@dataclass(frozen=True)
class Run:
    """One trained and scored run: the evaluate stage's metrics and its per-image predictions."""

    dataset: str
    method: str
    seed: int
    scores: dict  # metrics/D/M/seedS.json: the raw view's metrics at the top, the L2 view's under "l2"
    predictions: pd.DataFrame  # data/predictions/D/M/seedS.csv: columns row, correct, correct_l2

    def metric(self, view: str, name: str) -> float:
        return (self.scores["l2"] if view == "l2" else self.scores)[name]

    def correct(self, view: str) -> np.ndarray:
        """Per test image right (1) or wrong (0) after K-means on this view's embeddings."""
        return self.predictions["correct_l2" if view == "l2" else "correct"].to_numpy(dtype=float)

    @property
    def rows(self) -> np.ndarray:
        """The manifest rows of the test images it was scored on, in order."""
        return self.predictions["row"].to_numpy()


@dataclass(frozen=True)
class ViewStats:
    """One method on one view, over its seeds: the mean of every metric, its sample standard
    deviation over seeds (only with several seeds) and the bootstrap CI of K-means accuracy."""

    mean: dict[str, float]
    seed_std: dict[str, float]
    kmeans_acc_ci95: list[float]

    def to_json(self) -> dict:
        out: dict = {**self.mean, "kmeans_acc_ci95": self.kmeans_acc_ci95}
        out.update({f"{metric}_seed_std": std for metric, std in self.seed_std.items()})
        return out


@dataclass(frozen=True)
class Difference:
    """Accuracy of a method minus the baseline's on the same images, its paired bootstrap 95% CI,
    and `sign`: +1 the method better, -1 worse, 0 the CI includes 0."""

    difference: float
    ci95: list[float]
    sign: int

    def to_json(self) -> dict:
        return {"difference": self.difference, "ci95": self.ci95, "sign": self.sign}


@dataclass(frozen=True)
class Comparison:
    """A method against the baseline on one view: pooled over seeds, per seed, and the spread of
    the per-seed differences (only with several seeds)."""

    pooled: Difference
    per_seed: dict[int, Difference]
    seed_std: float | None
    verdict: str  # in the methods' own names (the markdown says it in the table's names)

    def to_json(self) -> dict:
        out = {**self.pooled.to_json(), "verdict": self.verdict,
               "per_seed": {str(seed): d.to_json() for seed, d in self.per_seed.items()}}
        if self.seed_std is not None:
            out["seed_std"] = self.seed_std
        return out


@dataclass(frozen=True)
class StudyNumber:
    """The study's published K-means accuracy for a comparable run, with its own bootstrap CI."""

    kmeans_acc: float
    correct: int
    n_test: int
    ci95: list[float]

    def to_json(self) -> dict:
        return {"kmeans_acc": self.kmeans_acc, "correct": self.correct, "n_test": self.n_test, "ci95": self.ci95}


@dataclass(frozen=True)
class MethodSummary:
    """Every run of one method on one dataset, summarised over its seeds."""

    method: str
    seeds: int
    shots: int
    n_test: int
    views: dict[str, ViewStats]  # by VIEWS key
    leak: dict[str, int]  # the largest count of each kind over the seeds
    triplet_pool: str | None = None
    published: StudyNumber | None = None
    published_note: str | None = None  # why the study's number is not beside this run

    @property
    def clean(self) -> bool:
        return is_clean(self.leak)

    def to_json(self) -> dict:
        out: dict = {"seeds": self.seeds, "shots": self.shots, "n_test": self.n_test, **self.views["raw"].to_json(),
                     "l2": self.views["l2"].to_json(), "leak": self.leak, "clean": self.clean}
        if self.triplet_pool is not None:
            out["triplet_pool"] = self.triplet_pool
        if self.published is not None:
            out["published"] = self.published.to_json()
        if self.published_note is not None:
            out["published_note"] = self.published_note
        return out


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset: each method's summary (in `params.methods` order) and each method's
    comparison with `baseline`, per view."""

    name: str
    baseline: str
    methods: dict[str, MethodSummary]
    comparisons: dict[str, dict[str, Comparison]] = field(default_factory=dict)  # method -> view -> comparison

    def to_json(self) -> dict:
        out: dict = {m: s.to_json() for m, s in self.methods.items()}
        if self.comparisons:
            out["comparisons"] = {
                f"{method}_vs_{self.baseline}": {**views["raw"].to_json(), "l2": views["l2"].to_json()}
                for method, views in self.comparisons.items()
            }
        return out


def summary_json(summary: dict[str, DatasetSummary]) -> dict:
    """`report/summary.json`: per dataset its `DatasetSummary.to_json()`."""
    return {name: dataset.to_json() for name, dataset in summary.items()}


def baseline_of(methods: list[str]) -> str:
    """The method every other is compared with: classification where it runs, else the first."""
    return "classification" if "classification" in methods else methods[0]


def verdict(sign: int, method: str, base: str) -> str:
    if sign > 0:
        return f"{method} better than {base} (95% CI excludes 0)"
    if sign < 0:
        return f"{method} worse than {base} (95% CI excludes 0)"
    return "no difference shown (95% CI includes 0)"


def _correct(runs: list[Run], view: str) -> np.ndarray:
    """Seeds x images matrix of per-image right (1) / wrong (0), in the runs' (seed) order."""
    return np.stack([r.correct(view) for r in runs])


def view_stats(runs: list[Run], view: str, resamples: int, seed: int) -> ViewStats:
    """Mean over seeds of each metric (and its seed spread), and the bootstrap CI of K-means accuracy."""
    mean, spread = {}, {}
    for metric in METRICS:
        s = summarise([r.metric(view, metric) for r in runs])
        mean[metric] = rounded(s["mean"])
        if s["std"] is not None:
            spread[metric] = rounded(s["std"])
    ci = accuracy_ci(_correct(runs, view), resamples=resamples, seed=seed)
    return ViewStats(mean, spread, rounded(ci))


def _difference(result: dict) -> Difference:
    return Difference(rounded(result["difference"]), rounded(result["ci95"]), result["sign"])


def compare(runs: list[Run], base_runs: list[Run], view: str, resamples: int, seed: int) -> Comparison:
    """`runs` (one method, by seed) against `base_runs` (the baseline, the same seeds) on one view."""
    a, b = _correct(runs, view), _correct(base_runs, view)
    pooled = _difference(paired_difference(a, b, resamples=resamples, seed=seed))
    per_seed = {r.seed: _difference(paired_difference(a[i], b[i], resamples=resamples, seed=seed))
                for i, r in enumerate(runs)}
    spread = rounded(float(np.std(a.mean(axis=1) - b.mean(axis=1), ddof=1))) if len(a) > 1 else None
    return Comparison(pooled, per_seed, spread, verdict(pooled.sign, runs[0].method, base_runs[0].method))


def _study_number(dataset: str, method: str, pool: str | None, params) -> tuple[StudyNumber | None, str | None]:
    """The study's number beside this run with its CI, or why there is none (None, None: it published none)."""
    paper = published(dataset, method, params.shots)
    if paper is None:
        return None, None
    reason = incomparable(
        method, split_source=params.split.source, model_name=params.model.name,
        pretrained=params.model.pretrained, image_size=params.model.image_size, triplet_pool=pool,
    )
    if reason is not None:
        return None, reason
    ones = np.zeros(paper.n_test)
    ones[: paper.correct] = 1
    ci = accuracy_ci(ones, resamples=params.evaluate.bootstrap_resamples, seed=params.evaluate.bootstrap_seed)
    return StudyNumber(rounded(paper.accuracy), paper.correct, paper.n_test, rounded(ci)), None


def summarise_runs(runs: list[Run], params) -> dict[str, DatasetSummary]:
    """Per dataset of `params.datasets`: per method its statistics on each view, leaks and the
    study's number, then paired bootstrap comparisons with the baseline, per seed and pooled."""
    methods = params.methods
    resamples, boot_seed = params.evaluate.bootstrap_resamples, params.evaluate.bootstrap_seed
    base = baseline_of(methods)
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
            study, note = _study_number(dataset, method, pool, params)
            entries[method] = MethodSummary(
                method=method, seeds=len(group), shots=params.shots, n_test=int(len(reference)),
                views={view: view_stats(group, view, resamples, boot_seed) for view in VIEWS},
                leak={k: max(int(r.scores["leak"].get(k, 0)) for r in group) for k in LEAK_KEYS},
                triplet_pool=pool, published=study, published_note=note,
            )
        comparisons = {
            method: {view: compare(by_method[method], by_method[base], view, resamples, boot_seed) for view in VIEWS}
            for method in methods if method != base
        }
        summary[dataset] = DatasetSummary(dataset, base, entries, comparisons)
    return summary
