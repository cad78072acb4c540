"""report: every run of the current `datasets` x `methods` x `seeds` side by side.

Writes `report/summary.json` (DVC metrics: per dataset and method the mean of every metric over
the training seeds, its standard deviation and 95% CI, the study's published number, and paired
comparisons of each method with the baseline), `report/summary.md`, and into the plots folder a
chart of K-means accuracy with error bars, a grid of the UMAP pictures and the training curves
of every run overlaid per dataset.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages.lib import cli
from stages.lib.atomic import write_json, write_text
from stages.lib.errors import PipelineError, stage_main
from stages.lib.published import published

if TYPE_CHECKING:
    import pandas as pd
# pandas, scipy (stages.lib.stats) and matplotlib (stages.lib.plotting) are imported where they are
# used, so that `python -m stages.report --help` answers at once.

log = logging.getLogger("stages.report")

# Metrics in the table, in order, with their headings; those an older evaluate did not write are skipped.
METRICS = {
    "kmeans_acc": "K-means acc",
    "nmi": "NMI",
    "ari": "ARI",
    "precision_at_1": "P@1",
    "map_at_r": "MAP@R",
    "knn_acc": "k-NN acc",
}
PERCENT = {"kmeans_acc", "precision_at_1", "map_at_r", "knn_acc"}


def read_runs(metrics_dir: Path, datasets: list[str], methods: list[str], seeds: list[int]) -> pd.DataFrame:
    """One row per dataset x method x seed from `metrics_dir/<dataset>/<method>/seed<S>.json`."""
    import pandas as pd

    rows = []
    for dataset in datasets:
        for method in methods:
            for seed in seeds:
                path = metrics_dir / dataset / method / f"seed{seed}.json"
                try:
                    scores = json.loads(path.read_text())
                except FileNotFoundError:
                    raise PipelineError(f"{path} not found; run the evaluate stage first (dvc repro)") from None
                except json.JSONDecodeError as exc:
                    raise PipelineError(f"{path} is corrupt ({exc}); re-run the evaluate stage") from None
                if "kmeans_acc" not in scores:
                    raise PipelineError(f"{path} has no kmeans_acc; re-run the evaluate stage")
                rows.append({"dataset": dataset, "method": method, "seed": seed, **scores})
    return pd.DataFrame(rows)


def baseline_of(methods: list[str]) -> str:
    """The method every other is compared with: classification where it runs, else the first."""
    return "classification" if "classification" in methods else methods[0]


def summarise_runs(runs: pd.DataFrame, methods: list[str], shots: int) -> dict:
    """Per dataset: per method the seed statistics of each metric, and paired comparisons."""
    from stages.lib.stats import paired_comparison, summarise

    summary: dict = {}
    metrics = [m for m in METRICS if m in runs.columns]
    base = baseline_of(methods)
    for dataset, table in runs.groupby("dataset", sort=False):
        entry: dict = {}
        for method in methods:
            rows = table[table["method"] == method].sort_values("seed")
            out: dict = {"seeds": len(rows), "shots": shots, "n_test": int(rows["n_test"].iloc[0])}
            for metric in metrics:
                s = summarise(rows[metric].tolist())
                out[metric] = round(s["mean"], 6)
                if s["std"] is not None:
                    out[f"{metric}_std"] = round(s["std"], 6)
                    out[f"{metric}_ci95"] = round(s["ci95"], 6)
            paper = published(str(dataset), method, shots)
            if paper is not None:
                out["published_kmeans_acc"] = paper
            entry[method] = out
        comparisons = {}
        for method in methods:
            if method == base:
                continue
            a = table[table["method"] == method].sort_values("seed")["kmeans_acc"].tolist()
            b = table[table["method"] == base].sort_values("seed")["kmeans_acc"].tolist()
            c = paired_comparison(a, b)
            comparisons[f"{method}_vs_{base}"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in c.items()}
        if comparisons:
            entry["comparisons"] = comparisons
        summary[str(dataset)] = entry
    return summary


def _cell(entry: dict, metric: str) -> str:
    if metric not in entry:
        return "-"
    scale, unit, digits = (100, "%", 1) if metric in PERCENT else (1, "", 3)
    text = f"{entry[metric] * scale:.{digits}f}{unit}"
    if f"{metric}_std" in entry:
        text += f" ± {entry[f'{metric}_std'] * scale:.{digits}f}"
    return text


def markdown(summary: dict, methods: list[str], shots: int) -> str:
    """The summary as markdown: one table per dataset, then the paired comparisons."""
    regime = "all training images" if shots == 0 else f"{shots} training images per class"
    lines = [f"# Results ({regime})", "", "Mean ± standard deviation over training seeds; "
             "`study` is the published K-means accuracy of the same run.", ""]
    for dataset, entry in summary.items():
        present = [m for m in METRICS if m in entry[methods[0]]]
        lines += [f"## {dataset}", ""]
        lines.append("| method | seeds | " + " | ".join(METRICS[m] for m in present) + " | study | test images |")
        lines.append("| --- " * (len(present) + 4) + "|")
        for method in methods:
            e = entry[method]
            paper = f"{e['published_kmeans_acc']:.2%}" if "published_kmeans_acc" in e else "-"
            cells = " | ".join(_cell(e, m) for m in present)
            lines.append(f"| {method} | {e['seeds']} | {cells} | {paper} | {e['n_test']} |")
        for name, c in entry.get("comparisons", {}).items():
            ci = f" ± {c['ci95'] * 100:.1f} (95% CI)" if c["ci95"] is not None else ""
            p = f", paired t-test p = {c['p_value']:.3g}" if c["p_value"] is not None else ""
            lines.append("")
            lines.append(
                f"- {name.replace('_vs_', ' vs ')}: K-means accuracy {c['mean_difference'] * 100:+.1f} points{ci} "
                f"over {c['n']} seed(s){p}: {c['verdict']}."
            )
        lines.append("")
    return "\n".join(lines)


def accuracy_chart(summary: dict, methods: list[str], shots: int):
    """K-means accuracy per dataset and method: bars at the mean, error bars of one standard
    deviation over seeds, and the study's published number as a black tick where it has one."""
    import matplotlib.pyplot as plt

    from stages.lib.plotting import class_colours

    datasets = list(summary)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(datasets) * len(methods)), 4.2))
    width = 0.8 / len(methods)
    colours = class_colours(len(methods))
    x = np.arange(len(datasets))
    for i, method in enumerate(methods):
        entries = [summary[d][method] for d in datasets]
        means = [e["kmeans_acc"] for e in entries]
        errors = [e.get("kmeans_acc_std", 0.0) for e in entries]
        pos = x + (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(pos, means, width, yerr=errors, capsize=3, label=method, color=colours[i])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in means], fontsize=7, padding=2)
        for p, e in zip(pos, entries, strict=True):
            if "published_kmeans_acc" in e:
                ax.plot([p - width / 2, p + width / 2], [e["published_kmeans_acc"]] * 2, color="black", lw=2)
    if any("published_kmeans_acc" in summary[d][m] for d in datasets for m in methods):
        ax.plot([], [], color="black", lw=2, label="the study's number")
    ax.set_xticks(x, datasets)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("K-means accuracy (test set)")
    regime = "all training images" if shots == 0 else f"{shots} per class"
    ax.set_title(f"K-means accuracy by method ({regime}; error bars: std over seeds)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def umap_grid(umaps: Path, datasets: list[str], methods: list[str], seed: int):
    """The UMAP pictures of one seed in a grid: a row per dataset, a column per method."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), len(methods), figsize=(4.5 * len(methods), 3.6 * len(datasets)),
                             squeeze=False)
    for r, dataset in enumerate(datasets):
        for c, method in enumerate(methods):
            ax = axes[r][c]
            ax.axis("off")
            path = umaps / f"{dataset}_{method}_seed{seed}.png"
            if not path.is_file():
                raise PipelineError(f"{path} not found; run the umap stage first (dvc repro)")
            ax.imshow(plt.imread(path))
    fig.tight_layout()
    return fig


def curves(curve_dir: Path, dataset: str, methods: list[str], seeds: list[int], pretrained: bool = True):
    """Training (dashed) and validation (solid) loss per epoch of every run of one dataset, the
    selected epoch (lowest validation loss) marked with a star. Losses of different methods are on
    different scales, so each method that trains has its own panel; one that does not has none."""
    import matplotlib.pyplot as plt

    from stages.lib.plotting import class_colours, method_label

    trained = [m for m in methods if any(_curve(curve_dir, dataset, m, s) is not None for s in seeds)]
    fig, axes = plt.subplots(1, max(1, len(trained)), figsize=(4.2 * max(1, len(trained)), 3.6), squeeze=False)
    colours = class_colours(max(1, len(seeds)))
    for ax, method in zip(axes[0], trained, strict=False):
        for i, seed in enumerate(seeds):
            table = _curve(curve_dir, dataset, method, seed)
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


def _curve(curve_dir: Path, dataset: str, method: str, seed: int) -> pd.DataFrame | None:
    import pandas as pd

    path = curve_dir / dataset / method / f"seed{seed}.csv"
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the train stage first (dvc repro)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); re-run the train stage") from None
    return table if len(table) else None


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("report", __doc__.splitlines()[0])
    p.add_argument("--metrics", type=Path, required=True, help="folder of per-run metrics (metrics/)")
    p.add_argument("--curves", type=Path, required=True, help="folder of per-run loss curves (plots/train)")
    p.add_argument("--umaps", type=Path, required=True, help="folder of per-run UMAP pictures (plots/umap)")
    p.add_argument("--out", type=Path, required=True, help="folder for summary.json and summary.md (report/)")
    p.add_argument("--plots", type=Path, required=True, help="folder for the report's pictures (plots/report)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    from stages.lib.plotting import save_figure

    runs = read_runs(args.metrics, params.datasets, params.methods, params.seeds)
    summary = summarise_runs(runs, params.methods, params.shots)
    figures = {"summary.png": accuracy_chart(summary, params.methods, params.shots),
               "umap_grid.png": umap_grid(args.umaps, params.datasets, params.methods, params.seeds[0])}
    for dataset in params.datasets:
        figures[f"curves_{dataset}.png"] = curves(args.curves, dataset, params.methods, params.seeds,
                                                  params.model.pretrained)
    args.plots.mkdir(parents=True, exist_ok=True)
    for stale in args.plots.glob("*.png"):
        if stale.name not in figures:
            stale.unlink()
    for name, fig in figures.items():
        save_figure(fig, args.plots / name)
    write_json(args.out / "summary.json", summary)
    table = markdown(summary, params.methods, params.shots)
    write_text(args.out / "summary.md", table)
    log.info("summary table -> %s, pictures -> %s", args.out / "summary.md", args.plots)  # `make demo` prints it


if __name__ == "__main__":
    main()
