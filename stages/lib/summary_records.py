"""The report's records: a run as read from its files (`Run`), and what the report says about a
view, a method, a comparison and a dataset, as small frozen dataclasses. Each class writes its own
part of `report/summary.json` (`to_json`); stages/lib/summary.py fills them in.

`summary_json` lays them out as `report/summary.json` has always had them (the raw view's numbers at
the top of each entry, the L2 ones under `"l2"`), so that `dvc metrics diff` lines up across
versions. Floats are rounded as written (`rounded`) when a summary is built, so the markdown and
the figures show exactly the numbers in the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.leaks import is_clean

if TYPE_CHECKING:
    import pandas as pd

    from stages.lib.published import Published

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

    @property
    def protocol(self) -> dict | None:
        """The run's `split.classes: unseen` record (its training and test classes); None: seen classes."""
        return self.scores.get("protocol")

    @property
    def classes(self) -> str:
        """The run's protocol: "seen" (the study's: tested on its training classes) or "unseen"."""
        return self.protocol["classes"] if self.protocol else "seen"


@dataclass(frozen=True)
class Coverage:
    """The measured coverage of a 95% interval in the closest setting `scripts/coverage.py`
    measured (`where`, e.g. "n=30" or "3 seeds"); only kept when below the threshold (0.90)."""

    coverage: float
    where: str

    def to_json(self) -> dict:
        return {"coverage": self.coverage, "at": self.where}

    def text(self) -> str:
        return f"measured coverage {self.coverage:.2f} at {self.where}"


@dataclass(frozen=True)
class Chance:
    """The chance level of K-means accuracy on one view (the evaluate stage's `kmeans_acc_chance`),
    averaged over the seeds, and the seeds whose accuracy is at or below their own run's 95th
    percentile: inside the chance band, where no "better than" claim may rest."""

    mean: float
    p95: float
    inside_band: list[int]

    def to_json(self) -> dict:
        return {"mean": self.mean, "p95": self.p95, "inside_band_seeds": self.inside_band}


@dataclass(frozen=True)
class ViewStats:
    """One method on one view, over its seeds: the mean of every metric, its sample standard
    deviation over seeds (only with several seeds), the bootstrap CI of K-means accuracy (with its
    measured coverage where that is below the threshold) and the chance level of K-means accuracy."""

    mean: dict[str, float]
    seed_std: dict[str, float]
    kmeans_acc_ci95: list[float]
    chance: Chance
    coverage: Coverage | None = None

    def to_json(self) -> dict:
        out: dict = {**self.mean, "kmeans_acc_ci95": self.kmeans_acc_ci95, "kmeans_acc_chance": self.chance.to_json()}
        out.update({f"{metric}_seed_std": std for metric, std in self.seed_std.items()})
        if self.coverage is not None:
            out["kmeans_acc_ci95_coverage"] = self.coverage.to_json()
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
    """`method` minus `than` on one view's K-means accuracy, the same test images for both.

    `difference` is the mean over seeds of the per-seed paired differences and `ci95` the interval
    the verdict uses: with several seeds the t-interval over seeds (`interval` "seeds"), with one
    seed the image-level paired bootstrap interval of the two trained models (`interval`
    "images"), which supports no method-level claim. `role` is "primary" (the comparison
    `params.primary` names) or "secondary"; a secondary one has its Holm-adjusted p-value
    `p_holm` and Bonferroni interval `ci_simultaneous` over the dataset's secondary comparisons.
    `sign` is +1 / -1 when the verdict's test excludes 0 (the primary's CI, a secondary's p_holm
    < 0.05) and `claim` whether the verdict says better or worse: never with one seed, never when
    the winner's accuracy is inside its chance band. `per_seed`: each seed's image-level interval.
    """

    method: str
    than: str
    view: str
    role: str
    seeds: int
    difference: float
    ci95: list[float]
    interval: str
    sign: int
    claim: bool
    verdict: str  # in the methods' own names (the markdown says it in the table's names)
    per_seed: dict[int, Difference]
    seed_std: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    ci_simultaneous: list[float] | None = None
    comparisons: int | None = None  # how many secondary comparisons the Holm adjustment is over
    coverage: Coverage | None = None  # of `ci95`, where measured below the threshold
    blocked_by_chance: list[int] = field(default_factory=list)  # the winner's seeds inside its chance band

    def to_json(self) -> dict:
        out = {"difference": self.difference, "ci95": self.ci95, "interval": self.interval, "sign": self.sign,
               "claim": self.claim, "verdict": self.verdict, "role": self.role, "seeds": self.seeds,
               "per_seed": {str(seed): d.to_json() for seed, d in self.per_seed.items()}}
        optional = {"seed_std": self.seed_std, "p_value": self.p_value, "p_holm": self.p_holm,
                    "ci_simultaneous": self.ci_simultaneous, "comparisons": self.comparisons,
                    "coverage": self.coverage.to_json() if self.coverage else None}
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.blocked_by_chance:
            out["blocked_by_chance_seeds"] = self.blocked_by_chance
        return out


@dataclass(frozen=True)
class StudyNumber:
    """The study's published K-means accuracy for a comparable run, with its own bootstrap CI and
    its mislabelled test images (`published.Mislabelled`)."""

    kmeans_acc: float
    correct: int
    n_test: int
    ci95: list[float]
    mislabelled: dict | None = None

    def to_json(self) -> dict:
        out = {"kmeans_acc": self.kmeans_acc, "correct": self.correct, "n_test": self.n_test, "ci95": self.ci95}
        if self.mislabelled is not None:
            out["mislabelled"] = self.mislabelled
        return out


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
    paper: Published | None = None  # the study's number for this dataset, method and shots, comparable or not
    mislabelled: int | None = None  # scored the study's way (evaluate.labels: study): its test labels that differ
    protocol: dict | None = None  # split.classes: unseen: its training and test classes; None: seen
    select: str | None = None  # the rule that kept each run's epoch (`train.select`); None: no training
    tuned: dict | None = None  # the search that chose its values (`tune.trials` > 0): `tuning_summary`
    # under train.budget steps or images: {kind, amount, steps: [per seed], images: [per seed]}; else None
    budget: dict | None = None

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
        if self.mislabelled is not None:
            out.update(labels="study", mislabelled=self.mislabelled)
        if self.protocol is not None:
            out["protocol"] = self.protocol
        if self.select is not None:
            out["select"] = self.select
        if self.tuned is not None:
            out["tuned"] = self.tuned
        if self.budget is not None:
            out["budget"] = self.budget
        return out


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset: each method's summary (in `params.methods` order) and each method's
    comparison with `baseline`, per view."""

    name: str
    baseline: str
    methods: dict[str, MethodSummary]
    # "A_vs_B" -> view -> comparison: every method against the baseline, and the primary pair
    comparisons: dict[str, dict[str, Comparison]] = field(default_factory=dict)
    primary_note: str | None = None  # why no comparison here is the primary one

    def primary(self) -> Comparison | None:
        return next((c for views in self.comparisons.values() for c in views.values() if c.role == "primary"), None)

    def to_json(self) -> dict:
        out: dict = {m: s.to_json() for m, s in self.methods.items()}
        if self.comparisons:
            out["comparisons"] = {name: {**views["raw"].to_json(), "l2": views["l2"].to_json()}
                                  for name, views in self.comparisons.items()}
        return out


def summary_json(summary: dict[str, DatasetSummary]) -> dict:
    """`report/summary.json`: per dataset its `DatasetSummary.to_json()`."""
    return {name: dataset.to_json() for name, dataset in summary.items()}
