"""The study's scoring, reproduced: which label each test image got in the study's evaluation.

The study's evaluator (`src/evaluator.py` of its public code) reads the test list in its order in
batches of four (a DataLoader with batch_size=4, shuffle=False) and gives every embedding of a
batch the label of the batch's first image. Its test lists are sorted by class, so a batch that
crosses a class boundary gives up to three images the previous class's label. K-means accuracy
was then computed against those labels. Pure functions; docs/study-scoring.md has the evidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

STUDY_BATCH = 4  # the study evaluator's batch size


def study_labels(labels: Sequence, *, batch_size: int = STUDY_BATCH) -> tuple[np.ndarray, int]:
    """The labels the study scored with, for test images whose true `labels` are given in the
    test list's order: image i gets the label of image batch_size * (i // batch_size). Returns those
    labels and how many differ from the true ones (the mislabelled images)."""
    true = np.asarray(labels)
    if true.ndim != 1 or len(true) == 0:
        raise ValueError(f"need a non-empty 1-D list of labels, got shape {true.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    first = (np.arange(len(true)) // batch_size) * batch_size
    scored = true[first]
    return scored, int(np.count_nonzero(scored != true))


def scoring_labels(labels: Sequence, how: bool | str) -> tuple[np.ndarray, int]:
    """The labels the evaluate stage scores against (`evaluate.labels`), for test images whose true
    `labels` are given in the test list's order, and how many differ from the true ones: `True`,
    the true labels themselves (0 differ); `"study"`, `study_labels` (batches of four)."""
    if how is True:
        return np.asarray(labels), 0
    if how == "study":
        return study_labels(labels)
    raise ValueError(f"evaluate.labels must be true or study, got {how!r}")


def sorted_list_counts(class_counts: Sequence[tuple[str, int]], *, batch_size: int = STUDY_BATCH) -> dict:
    """What the study's evaluator shows for a test list sorted by class: `class_counts` gives each
    class and its number of test images in the list's order. Returns the points per class a plot
    of the study's labels holds (classes in order of first appearance, as plotly draws them; a
    class that never starts a batch has none) and the number of mislabelled images."""
    names = [name for name, count in class_counts for _ in range(count)]
    if not names:
        raise ValueError("need at least one test image")
    scored, wrong = study_labels(np.array(names, dtype=object), batch_size=batch_size)
    return {"points": dict(Counter(scored.tolist())), "mislabelled": wrong}


def fewest_mislabelled(points: dict[str, int], true_counts: dict[str, int]) -> int:
    """The fewest mislabelled images that turn `true_counts` (images per class) into the `points`
    per class a plot shows: every point beyond a class's true count carries another class's label
    (half the L1 distance between the two count vectors). Both must count the same images."""
    classes = set(points) | set(true_counts)
    shown, held = sum(points.values()), sum(true_counts.values())
    if shown != held:
        raise ValueError(f"the plot has {shown} points but the test set {held} images")
    return int(sum(max(0, points.get(c, 0) - true_counts.get(c, 0)) for c in classes))


def study_accuracy(labels: Sequence, clusters: Sequence, *, batch_size: int = STUDY_BATCH) -> dict:
    """K-means accuracy of one clustering scored both ways, for test images in the list's order:
    against the true labels (this project's number) and against `study_labels` (the study's), with
    the Hungarian matching of `stages.lib.metrics` for both, and the number of mislabelled images."""
    from stages.lib.metrics import matched_accuracy

    true = np.asarray(labels)
    scored, wrong = study_labels(true, batch_size=batch_size)
    return {"kmeans_acc": matched_accuracy(true, np.asarray(clusters)),
            "kmeans_acc_study": matched_accuracy(scored, np.asarray(clusters)), "mislabelled": wrong}
