"""The study's published K-means accuracies, with the test-set sizes they were measured on, how
many of those test images the study scored with another class's label, and when a run of ours is
comparable with one (`../shared/SEED_PROTOCOL.md`).

The sizes come from the study's own embedding plots (one point per test image) and match every
published percentage exactly: pets 1,478 test images with all training data, 222 (6 per breed)
at 15 per class; DeFungi 740 and 30 (6 per class). The mislabelled counts come from the same plots
(docs/study-scoring.md): the study's evaluator labelled every image of a batch of four with the
batch's first label, so a plot's points per class differ from the true class sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

STUDY_MODEL = "convnext_tiny.fb_in22k"
STUDY_IMAGE_SIZE = 224


@dataclass(frozen=True)
class Mislabelled:
    """How many test images behind a published number the study scored with another class's label:
    `fewest` (None: not counted), exact or a lower bound, and the evidence (docs/study-scoring.md)."""

    fewest: int | None
    exact: bool
    evidence: str

    def count(self, n_test: int) -> str:
        """`36 of 222`, `at least 12 of 740`, `none seen`, or `not counted`."""
        if self.fewest is None:
            return "not counted"
        if self.exact:
            return f"{self.fewest:,} of {n_test:,}"
        return "none seen" if self.fewest == 0 else f"at least {self.fewest:,} of {n_test:,}"

    def text(self, n_test: int) -> str:
        """The count with its evidence, in one phrase."""
        return f"test images mislabelled by the study's scoring: {self.count(n_test)} ({self.evidence})"

    def to_json(self) -> dict:
        return {"fewest": self.fewest, "exact": self.exact, "evidence": self.evidence}


@dataclass(frozen=True)
class Published:
    """One published number: `correct` of `n_test` test images, and its mislabelled test images."""

    correct: int
    n_test: int
    mislabelled: Mislabelled

    @property
    def accuracy(self) -> float:
        return self.correct / self.n_test


# What the study's plots (`outputs/*.html`, one point per test image, coloured by the label scored
# with) show; docs/study-scoring.md has the counts and how they were read.
_PETS_15 = Mislabelled(36, True, "its plot: 18 breeds with 8 points, 18 with 4, one with 6; 6 each in truth")
_DEFUNGI_15 = Mislabelled(4, True, "its plot: 8, 4, 8, 4, 6 points per class; 6 each in truth")
_PETS_FULL = Mislabelled(None, False, "its two 1,478-point plots were not read here")

# (dataset, method, shots) -> the published result; shots 0 = all training images.
PUBLISHED: dict[tuple[str, str, int], Published] = {
    ("pets", "classification", 0): Published(1315, 1478, _PETS_FULL),  # 88.97%
    ("pets", "triplet", 0): Published(1419, 1478, _PETS_FULL),  # 96.01%
    ("pets", "classification", 15): Published(123, 222, _PETS_15),  # 55.41%
    ("pets", "triplet", 15): Published(183, 222, _PETS_15),  # 82.43%
    ("defungi", "classification", 0): Published(633, 740, Mislabelled(
        0, False, "its plot: 148 points per class, as the true sizes; a list sorted by class gives none")),  # 85.54%
    ("defungi", "triplet", 0): Published(721, 740, Mislabelled(
        12, False, "its plot: 144, 144, 144, 148, 160 points per class, 148 each in truth; its list was ordered "
        "differently from the classification run's")),  # 97.43%
    ("defungi", "classification", 15): Published(17, 30, _DEFUNGI_15),  # 56.67%
    ("defungi", "triplet", 15): Published(20, 30, _DEFUNGI_15),  # 66.67%
}


def published(dataset: str, method: str, shots: int) -> Published | None:
    """The study's result for this run, or None where it published none."""
    return PUBLISHED.get((dataset, method, shots))


def incomparable(
    method: str, *, split_source: str, model_name: str, pretrained: bool, image_size: int,
    triplet_pool: str | None, labels: bool | str, classes: str = "seen",
) -> str | None:
    """Why a run cannot be set beside the study's number (one line), or None when it can: the
    study's protocol (tested on its training classes: `split.classes: seen`), its lists
    (`split.source: annotations`), its pretrained model at its size, for triplet its sampling from
    every image (`triplet.pool: study`), and its scoring (`labels`, the run's `evaluate.labels`:
    `study`, every image labelled as the first of its batch of four, as the published numbers
    were). `shots` is matched by lookup."""
    if classes != "seen":
        return ("tested on classes it never trained on (split.classes: unseen); the study tested on its training "
                "classes (seen)")
    if split_source != "annotations":
        return "not the study's split lists (split.source: generated; the study's are annotations)"
    if model_name != STUDY_MODEL or not pretrained or image_size != STUDY_IMAGE_SIZE:
        return (f"not the study's model ({model_name}, {'pretrained' if pretrained else 'untrained'}, "
                f"{image_size} px; the study: {STUDY_MODEL}, pretrained, {STUDY_IMAGE_SIZE} px)")
    if method == "triplet" and triplet_pool != "study":
        return ("triplets drawn from the training split only (triplet.pool: split); the study drew them from "
                "every image, test included (triplet.pool: study)")
    if labels != "study":
        return ("this run was scored against each test image's own label; the study's evaluator gave every image "
                "of a batch of four the first one's label (evaluate.labels: study scores a run that way)")
    return None
