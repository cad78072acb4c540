"""Matplotlib figures saved reproducibly (no timestamps or software versions in the PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.lib.atomic import atomic_path  # noqa: E402


def class_colours(n: int) -> np.ndarray:
    """n distinct RGBA colours: tab10/tab20 for few classes, then tab20 + tab20b + tab20c."""
    if n <= 10:
        return plt.get_cmap("tab10")(np.arange(n))
    palette = np.concatenate([plt.get_cmap(m)(np.arange(20)) for m in ("tab20", "tab20b", "tab20c")])
    if n <= len(palette):
        return palette[:n]
    return plt.get_cmap("hsv")(np.linspace(0, 1, n, endpoint=False))


def method_label(method: str, pretrained: bool) -> str:
    """How pictures and tables name a method: the `pretrained` control is "untrained" when the
    backbone starts from random weights (`model.pretrained: false`)."""
    if method == "pretrained" and not pretrained:
        return "untrained (random init)"
    return method


def save_figure(fig: plt.Figure, path: Path, dpi: int = 120) -> None:
    """Save `fig` as PNG atomically, without metadata, then close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)


def scatter_by_class(points: np.ndarray, labels: np.ndarray, classes: list[str], title: str) -> plt.Figure:
    """2-D points coloured by class, with a legend of class names beside the plot."""
    fig, ax = plt.subplots(figsize=(9, 7))
    colours = class_colours(len(classes))
    for label, name in enumerate(classes):
        mask = labels == label
        ax.scatter(points[mask, 0], points[mask, 1], s=6, color=colours[label], label=name, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, markerscale=2.5, frameon=False,
        ncol=1 if len(classes) <= 20 else 2,
    )
    return fig
