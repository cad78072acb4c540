"""Matplotlib figures saved reproducibly (no timestamps or software versions in the PNG), and the
pictures every run gets: a UMAP scatter, a retrieval grid, a confusion matrix.

No picture puts a legend over data: class names sit where the classes lie, legends go outside.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.lib.atomic import atomic_path  # noqa: E402

MATCH, MISMATCH, QUERY = "#1a9850", "#d73027", "#252525"  # tile frames of the retrieval picture


def method_label(method: str, pretrained: bool) -> str:
    """How a picture, table or chart names method `method`: the `pretrained` control is called
    "untrained" when `model.pretrained` is false (its embeddings then come from random weights)."""
    return "untrained" if method == "pretrained" and not pretrained else method


def class_colours(n: int) -> np.ndarray:
    """n distinct RGBA colours: tab10/tab20 for few classes, then tab20 + tab20b + tab20c."""
    if n <= 10:
        return plt.get_cmap("tab10")(np.arange(n))
    palette = np.concatenate([plt.get_cmap(m)(np.arange(20)) for m in ("tab20", "tab20b", "tab20c")])
    if n <= len(palette):
        return palette[:n]
    return plt.get_cmap("hsv")(np.linspace(0, 1, n, endpoint=False))


def save_figure(fig: plt.Figure, path: Path, dpi: int = 120) -> None:
    """Save `fig` as PNG atomically, without metadata, then close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)


def marker_size(n_points: int) -> float:
    """Marker area (points^2) for a scatter of `n_points`: large for a hundred points, small for
    thousands, so neither leaves specks nor a solid blot (about 40 at 100, 7 at 3,000)."""
    return float(np.clip(400.0 / np.sqrt(max(n_points, 1)), 3.0, 60.0))


def _text_colour(rgba: np.ndarray) -> str:
    luminance = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
    return "black" if luminance > 0.55 else "white"


def scatter_by_class(points: np.ndarray, labels: np.ndarray, classes: list[str], title: str) -> plt.Figure:
    """2-D points coloured by class, each class named at the median of its points (no legend)."""
    n_classes = len(classes)
    side = 7.0 if n_classes <= 12 else 9.0
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    colours = class_colours(n_classes)
    size = marker_size(len(points))
    alpha = 0.85 if len(points) <= 1000 else 0.6
    for label in range(n_classes):
        mask = labels == label
        ax.scatter(points[mask, 0], points[mask, 1], s=size, color=colours[label], linewidths=0, alpha=alpha)
    fontsize = 9 if n_classes <= 12 else 7 if n_classes <= 40 else 6
    texts = []
    for label, name in enumerate(classes):
        mask = labels == label
        if not mask.any():
            continue
        x, y = np.median(points[mask], axis=0)
        texts.append(ax.text(
            x, y, name, fontsize=fontsize, ha="center", va="center", color=_text_colour(colours[label]),
            bbox={"boxstyle": "round,pad=0.15", "facecolor": colours[label], "edgecolor": "black",
                  "linewidth": 0.4, "alpha": 0.8},
        ))
    ax.margins(0.06)
    if len(texts) > 1:  # move names apart (adjustText) so none hides another; a thin line ties each to its place
        from adjustText import adjust_text

        adjust_text(texts, ax=ax, iter_lim=300, expand=(1.05, 1.15),  # iterations, not time: reproducible
                    arrowprops={"arrowstyle": "-", "color": "0.35", "lw": 0.5})
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def retrieval_grid(
    query_pixels: np.ndarray, query_labels: np.ndarray, neighbour_pixels: np.ndarray,
    neighbour_labels: np.ndarray, classes: list[str], title: str,
) -> plt.Figure:
    """One row per query: the query image, then its nearest test images in order, each framed
    green when its class is the query's and red when not, captioned with its class."""
    n_queries, k = neighbour_labels.shape
    fig, axes = plt.subplots(n_queries, k + 1, figsize=(1.35 * (k + 1), 1.45 * n_queries + 0.6), squeeze=False)
    for row in range(n_queries):
        tiles = [(query_pixels[row], query_labels[row], QUERY, "query")]
        for col in range(k):
            same = neighbour_labels[row, col] == query_labels[row]
            tiles.append((neighbour_pixels[row, col], neighbour_labels[row, col], MATCH if same else MISMATCH,
                          f"{col + 1}"))
        for col, (pixels, label, frame, tag) in enumerate(tiles):
            ax = axes[row][col]
            ax.imshow(pixels, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(frame)
                spine.set_linewidth(4 if col else 2)
            name = str(classes[int(label)])
            ax.set_xlabel(name if len(name) <= 16 else name[:15] + "…", fontsize=7, color=frame, labelpad=2)
            if row == 0:
                ax.set_title(tag, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, "frame: green = same class as the query, red = another class", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    return fig


def confusion_matrix_figure(labels: np.ndarray, predicted: np.ndarray, classes: list[str], title: str) -> plt.Figure:
    """Rows: the true class; columns: the class K-means' matched cluster stands for (`predicted`,
    -1 for an image in a cluster the matching left unmatched, shown as its own column). Cells are
    coloured by the share of the row and, for up to 20 classes, labelled with their counts."""
    labels = np.asarray(labels)
    predicted = np.asarray(predicted)
    n = len(classes)
    unmatched = bool((predicted < 0).any())
    columns = n + int(unmatched)
    counts = np.zeros((n, columns), dtype=int)
    np.add.at(counts, (labels, np.where(predicted < 0, n, predicted)), 1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = float(np.clip(0.32 * n + 2.5, 4.5, 14.0))
    fig, ax = plt.subplots(figsize=(side + 0.8, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fontsize = 9 if n <= 12 else 7 if n <= 25 else 5
    ax.set_yticks(np.arange(n), classes, fontsize=fontsize)
    ax.set_xticks(np.arange(columns), [*classes, "unmatched"][:columns], fontsize=fontsize, rotation=90)
    ax.set_ylabel("class of the image")
    ax.set_xlabel("class of its K-means cluster (Hungarian matching)")
    if n <= 20:
        for (r, c), count in np.ndenumerate(counts):
            if count:
                ax.text(c, r, str(count), ha="center", va="center", fontsize=fontsize - 1,
                        color="white" if shares[r, c] > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share of the class")
    accuracy = float(np.mean(labels == predicted)) if len(labels) else 0.0
    ax.set_title(f"{title}\nK-means accuracy {accuracy:.1%} (the diagonal)", fontsize=10)
    fig.tight_layout()
    return fig

