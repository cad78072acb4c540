"""The report's three figures: K-means accuracy with its intervals, the grid of UMAP pictures and
the training curves of one dataset. They draw what they are given; the report stage reads the
files. (The per-run pictures are in `stages.lib.plotting`, whose helpers these share.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages.lib.plotting import class_colours, method_label, plt

if TYPE_CHECKING:
    import pandas as pd

    from stages.lib.summary_records import DatasetSummary


def accuracy_chart(summary: dict[str, DatasetSummary], methods: list[str], seeds: int, shots: int,
                   pretrained: bool) -> plt.Figure:
    """K-means accuracy per dataset and method: bars at the mean, error bars of its 95% bootstrap
    interval (over test images, and seeds when there are several), and the study's published
    number with its own interval in black where the run is comparable with it."""
    datasets = list(summary)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(datasets) * len(methods)) + 2.2, 4.2))
    width = 0.8 / len(methods)
    colours = class_colours(len(methods))
    x = np.arange(len(datasets))
    for i, method in enumerate(methods):
        entries = [summary[d].methods[method] for d in datasets]
        raw = [e.views["raw"] for e in entries]
        means = np.array([v.mean["kmeans_acc"] for v in raw])
        lo = np.array([v.kmeans_acc_ci95[0] for v in raw])
        hi = np.array([v.kmeans_acc_ci95[1] for v in raw])
        pos = x + (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(pos, means, width, yerr=[means - lo, hi - means], capsize=3,
                      label=method_label(method, pretrained), color=colours[i])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in means], fontsize=7, label_type="center", color="white")
        for p, e in zip(pos, entries, strict=True):
            if e.published is not None:
                pub = e.published
                ax.errorbar([p + width * 0.3], [pub.kmeans_acc],
                            yerr=[[pub.kmeans_acc - pub.ci95[0]], [pub.ci95[1] - pub.kmeans_acc]],
                            fmt="D", color="black", markersize=4, capsize=2, lw=1)
    if any(summary[d].methods[m].published is not None for d in datasets for m in methods):
        ax.errorbar([], [], yerr=[], fmt="D", color="black", markersize=4, label="the study's number")
    ax.set_xticks(x, datasets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("K-means accuracy (test set)")
    regime = "all training images" if shots == 0 else f"{shots} per class"
    if any(e.protocol for data in summary.values() for e in data.methods.values()):  # split.classes: unseen
        regime += ", unseen classes"
    ax.set_title(f"K-means accuracy ({regime}); error bars: 95% bootstrap CI over test images"
                 f"{f' and {seeds} seeds' if seeds > 1 else ''}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def umap_grid(pictures: list[list[Path]]) -> plt.Figure:
    """Pictures in a grid, `pictures[row][column]` (the report: a row per dataset, a column per method)."""
    rows, columns = len(pictures), len(pictures[0])
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows), squeeze=False)
    for r, row in enumerate(pictures):
        for c, path in enumerate(row):
            ax = axes[r][c]
            ax.axis("off")
            ax.imshow(plt.imread(path))
    fig.tight_layout()
    return fig


def curves(dataset: str, tables: dict[str, dict[int, pd.DataFrame | None]], pretrained: bool = True) -> plt.Figure:
    """Training (dashed) and validation (solid) loss per epoch of every run of one dataset
    (`tables[method][seed]`, columns epoch, train_loss, val_loss, best; None for a run that did
    not train), the selected epoch (lowest validation loss) marked with a star. Losses of
    different methods are on different scales, so each method that trains has its own panel; one
    that does not has none."""
    seeds = list(next(iter(tables.values()), {}))
    trained = [m for m, runs in tables.items() if any(t is not None for t in runs.values())]
    fig, axes = plt.subplots(1, max(1, len(trained)), figsize=(4.2 * max(1, len(trained)), 3.6), squeeze=False)
    colours = class_colours(max(1, len(seeds)))
    for ax, method in zip(axes[0], trained, strict=False):
        for i, seed in enumerate(seeds):
            table = tables[method][seed]
            if table is None:
                continue
            ax.plot(table["epoch"], table["val_loss"], color=colours[i], label=f"seed {seed} validation")
            ax.plot(table["epoch"], table["train_loss"], color=colours[i], ls="--", label=f"seed {seed} training")
            best = table[table["best"] == 1]
            ax.plot(best["epoch"], best["val_loss"], marker="*", ms=13, color=colours[i], mec="black", mew=0.6,
                    ls="none", label=f"seed {seed} selected epoch", zorder=3)
        ax.set_title(f"{dataset} · {method_label(method, pretrained)}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
    if trained:  # one legend for every panel, below them, never over a curve
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(labels)),
                   fontsize=8, frameon=False)
    else:
        axes[0][0].axis("off")
        axes[0][0].set_title(f"{dataset}: no method trains")
    fig.tight_layout()
    return fig
