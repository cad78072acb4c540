"""The study's published K-means accuracies, with the test-set sizes they were measured on, and
when a run of ours is comparable with one (`../shared/SEED_PROTOCOL.md`).

The sizes come from the study's own embedding plots (one point per test image) and match every
published percentage exactly: pets 1,478 test images with all training data, 222 (6 per breed)
at 15 per class; DeFungi 740 and 30 (6 per class).
"""

from __future__ import annotations

from dataclasses import dataclass

STUDY_MODEL = "convnext_tiny.fb_in22k"
STUDY_IMAGE_SIZE = 224


@dataclass(frozen=True)
class Published:
    """One published number: `correct` of `n_test` test images."""

    correct: int
    n_test: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n_test


# (dataset, method, shots) -> the published result; shots 0 = all training images.
PUBLISHED: dict[tuple[str, str, int], Published] = {
    ("pets", "classification", 0): Published(1315, 1478),  # 88.97%
    ("pets", "triplet", 0): Published(1419, 1478),  # 96.01%
    ("pets", "classification", 15): Published(123, 222),  # 55.41%
    ("pets", "triplet", 15): Published(183, 222),  # 82.43%
    ("defungi", "classification", 0): Published(633, 740),  # 85.54%
    ("defungi", "triplet", 0): Published(721, 740),  # 97.43%
    ("defungi", "classification", 15): Published(17, 30),  # 56.67%
    ("defungi", "triplet", 15): Published(20, 30),  # 66.67%
}


def published(dataset: str, method: str, shots: int) -> Published | None:
    """The study's result for this run, or None where it published none."""
    return PUBLISHED.get((dataset, method, shots))


def incomparable(
    method: str, *, split_source: str, model_name: str, pretrained: bool, image_size: int,
    triplet_pool: str | None,
) -> str | None:
    """Why a run cannot be set beside the study's number (one line), or None when it can: the
    study's lists (`split.source: annotations`), its pretrained model at its size, and for
    triplet its sampling from every image (`triplet.pool: study`). `shots` is matched by lookup."""
    if split_source != "annotations":
        return "not the study's split lists (split.source: generated; the study's are annotations)"
    if model_name != STUDY_MODEL or not pretrained or image_size != STUDY_IMAGE_SIZE:
        return (f"not the study's model ({model_name}, {'pretrained' if pretrained else 'untrained'}, "
                f"{image_size} px; the study: {STUDY_MODEL}, pretrained, {STUDY_IMAGE_SIZE} px)")
    if method == "triplet" and triplet_pool != "study":
        return ("triplets drawn from the training split only (triplet.pool: split); the study drew them from "
                "every image, test included (triplet.pool: study)")
    return None
