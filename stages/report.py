"""report: every run of the current `datasets` x `methods` x `seeds` side by side, with its
uncertainty and its leaks.

Writes `report/summary.json` (DVC metrics: per dataset and method the mean of every metric over
the training seeds, the 95% bootstrap interval of K-means accuracy over test images and seeds, the
same on L2-normalised embeddings, the leak counts, the study's number where the run is comparable
with it, and paired bootstrap comparisons of each method with the baseline on the same test
images), `report/summary.md`, and into the plots folder a chart of K-means accuracy with its
intervals, a grid of the UMAP pictures and the training curves of every run overlaid per dataset.
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
from stages.lib.leaks import LEAK_KEYS, is_clean
from stages.lib.published import incomparable, published
from stages.lib.stats import accuracy_ci, paired_difference, summarise

if TYPE_CHECKING:
    import pandas as pd
# pandas and matplotlib (stages.lib.plotting) are imported where they are used, so that
# `python -m stages.report --help` answers at once.

log = logging.getLogger("stages.report")

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
VIEWS = {"": "raw embeddings", "l2": "L2-normalised embeddings"}


def read_runs(
    metrics_dir: Path, predictions_dir: Path, datasets: list[str], methods: list[str], seeds: list[int]
) -> list[dict]:
    """One record per dataset x method x seed: its metrics JSON and its per-image predictions."""
    import pandas as pd

    runs = []
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
                missing = [k for k in ("kmeans_acc", "l2", "leak") if k not in scores]
                if missing:
                    raise PipelineError(f"{path} has no {', '.join(missing)}; re-run the evaluate stage (dvc repro)")
                table = predictions_dir / dataset / method / f"seed{seed}.csv"
                try:
                    predictions = pd.read_csv(table, usecols=["row", "correct", "correct_l2"])
                except FileNotFoundError:
                    raise PipelineError(f"{table} not found; run the evaluate stage first (dvc repro)") from None
                except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                    raise PipelineError(f"{table} is corrupt ({exc}); re-run the evaluate stage") from None
                runs.append({"dataset": dataset, "method": method, "seed": seed, "scores": scores,
                             "predictions": predictions})
    return runs


def baseline_of(methods: list[str]) -> str:
    """The method every other is compared with: classification where it runs, else the first."""
    return "classification" if "classification" in methods else methods[0]


def _correct(runs: list[dict], view: str) -> np.ndarray:
    """Seeds x images matrix of per-image right (1) / wrong (0), in seed order."""
    column = "correct_l2" if view == "l2" else "correct"
    return np.stack([r["predictions"][column].to_numpy(dtype=float) for r in runs])


def _view_stats(runs: list[dict], view: str, resamples: int, seed: int) -> dict:
    """Mean over seeds of each metric (and its seed spread), and the bootstrap CI of K-means accuracy."""
    out: dict = {}
    for metric in METRICS:
        values = [(r["scores"]["l2"] if view == "l2" else r["scores"])[metric] for r in runs]
        s = summarise(values)
        out[metric] = s["mean"]
        if s["std"] is not None:
            out[f"{metric}_seed_std"] = s["std"]
    out["kmeans_acc_ci95"] = accuracy_ci(_correct(runs, view), resamples=resamples, seed=seed)
    return out


def verdict(sign: int, method: str, base: str) -> str:
    if sign > 0:
        return f"{method} better than {base} (95% CI excludes 0)"
    if sign < 0:
        return f"{method} worse than {base} (95% CI excludes 0)"
    return "no difference shown (95% CI includes 0)"


def summarise_runs(runs: list[dict], params) -> dict:
    """Per dataset: per method the statistics of every metric, leaks and the study's number, then
    paired bootstrap comparisons with the baseline, per seed and pooled over seeds."""
    methods, shots = params.methods, params.shots
    resamples, boot_seed = params.evaluate.bootstrap_resamples, params.evaluate.bootstrap_seed
    base = baseline_of(methods)
    summary: dict = {}
    for dataset in params.datasets:
        by_method = {m: sorted((r for r in runs if r["dataset"] == dataset and r["method"] == m),
                               key=lambda r: r["seed"]) for m in methods}
        reference = by_method[methods[0]][0]["predictions"]["row"].to_numpy()
        for method, group in by_method.items():
            for r in group:
                if not np.array_equal(r["predictions"]["row"].to_numpy(), reference):
                    raise PipelineError(
                        f"{dataset}: {method} seed {r['seed']} was scored on other test images than "
                        f"{methods[0]}; re-run dvc repro so that every run uses the current split"
                    )
        entry: dict = {}
        for method, group in by_method.items():
            leak = {k: max(int(r["scores"]["leak"].get(k, 0)) for r in group) for k in LEAK_KEYS}
            out: dict = {"seeds": len(group), "shots": shots, "n_test": int(len(reference))}
            out.update(_view_stats(group, "", resamples, boot_seed))
            out["l2"] = _view_stats(group, "l2", resamples, boot_seed)
            out["leak"] = leak
            out["clean"] = is_clean(leak)
            pool = group[0]["scores"].get("triplet_pool")
            if pool is not None:
                out["triplet_pool"] = pool
            paper = published(dataset, method, shots)
            if paper is not None:
                reason = incomparable(
                    method, split_source=params.split.source, model_name=params.model.name,
                    pretrained=params.model.pretrained, image_size=params.model.image_size, triplet_pool=pool,
                )
                if reason is None:
                    ones = np.zeros(paper.n_test)
                    ones[: paper.correct] = 1
                    out["published"] = {
                        "kmeans_acc": paper.accuracy, "correct": paper.correct, "n_test": paper.n_test,
                        "ci95": accuracy_ci(ones, resamples=resamples, seed=boot_seed),
                    }
                else:
                    out["published_note"] = reason
            entry[method] = out
        comparisons = {}
        for method in methods:
            if method == base:
                continue
            c: dict = {}
            for view in VIEWS:
                a, b = _correct(by_method[method], view), _correct(by_method[base], view)
                pooled = paired_difference(a, b, resamples=resamples, seed=boot_seed)
                result = {**pooled, "verdict": verdict(pooled["sign"], method, base)}
                result["per_seed"] = {
                    str(r["seed"]): paired_difference(a[i], b[i], resamples=resamples, seed=boot_seed)
                    for i, r in enumerate(by_method[method])
                }
                if len(a) > 1:
                    result["seed_std"] = float(np.std(a.mean(axis=1) - b.mean(axis=1), ddof=1))
                if view:
                    c[view] = result
                else:
                    c.update(result)
            comparisons[f"{method}_vs_{base}"] = c
        if comparisons:
            entry["comparisons"] = comparisons
        summary[dataset] = entry
    return _rounded(summary)


def _rounded(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _pct(x: float, digits: int = 1) -> str:
    return f"{x * 100:.{digits}f}%"


def _ci(ci: list[float]) -> str:
    return f"[{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]"


def _cell(entry: dict, metric: str) -> str:
    scale, unit, digits = (100, "%", 1) if metric in PERCENT else (1, "", 3)
    text = f"{entry[metric] * scale:.{digits}f}{unit}"
    if metric == "kmeans_acc":
        text += f" {_ci(entry['kmeans_acc_ci95'])}"
    elif f"{metric}_seed_std" in entry:
        text += f" ± {entry[f'{metric}_seed_std'] * scale:.{digits}f}"
    return text


def _leak_cell(leak: dict) -> str:
    if is_clean(leak):
        return "clean"
    parts = [f"{leak[k]:,} {name}" for k, name in (("test_in_train", "test in lists"),
                                                 ("test_in_pool", "test in pool"),
                                                 ("groups_across", "groups across")) if leak.get(k)]
    return "**" + ", ".join(parts) + "**"


def _leak_sentence(method: str, leak: dict, n_test: int) -> str:
    parts = []
    if leak.get("test_in_train"):
        parts.append(f"{leak['test_in_train']:,} of its {n_test:,} test images were also in its training or "
                     "validation lists")
    if leak.get("test_in_pool"):
        parts.append(f"{leak['test_in_pool']:,} test images were in the pool its triplets were drawn from")
    if leak.get("groups_across"):
        parts.append(f"{leak['groups_across']:,} source groups (e.g. patches of one raw image) had a test image and "
                     "another image it trained on")
    return f"- **{method} is not clean**: " + "; ".join(parts) + "."


def markdown(summary: dict, params) -> str:
    """The summary as markdown: per dataset a table, the paired comparisons, then the notes."""
    methods, shots = params.methods, params.shots
    from stages.lib.plotting import method_label

    regime = "all training images" if shots == 0 else f"{shots} training images per class"
    label = {m: method_label(m, params.model.pretrained) for m in methods}
    lines = [
        f"# Results ({regime})", "",
        "K-means accuracy with its 95% bootstrap interval over test images (and over training seeds when there are "
        "several); other metrics: mean ± standard deviation over seeds. `L2` repeats K-means on L2-normalised "
        "embeddings. `leak`: test images (or their source groups) the training could see. `study`: the published "
        "number with its own interval, only where the run matches the study's conditions.", "",
    ]
    for dataset, entry in summary.items():
        first = entry[methods[0]]
        lines += [f"## {dataset} ({first['n_test']:,} test images, {first['seeds']} seed(s))", ""]
        lines.append("| method | " + " | ".join(METRICS.values()) + " | L2: K-means acc | leak | study |")
        lines.append("| --- " * (len(METRICS) + 4) + "|")
        for method in methods:
            e = entry[method]
            p = e.get("published")
            paper = f"{_pct(p['kmeans_acc'], 2)} {_ci(p['ci95'])} ({p['correct']:,}/{p['n_test']:,})" if p else "-"
            cells = " | ".join(_cell(e, m) for m in METRICS)
            l2 = f"{_pct(e['l2']['kmeans_acc'])} {_ci(e['l2']['kmeans_acc_ci95'])}"
            lines.append(f"| {label[method]} | {cells} | {l2} | {_leak_cell(e['leak'])} | {paper} |")
        lines.append("")
        for name, c in entry.get("comparisons", {}).items():
            method, base = name.split("_vs_")
            seeds = "; ".join(f"seed {s}: {d['difference'] * 100:+.1f} {_ci(d['ci95'])}"
                              for s, d in c["per_seed"].items())
            lines.append(
                f"- {label[method]} vs {label[base]}: K-means accuracy {c['difference'] * 100:+.1f} points "
                f"{_ci(c['ci95'])}: {verdict(c['sign'], label[method], label[base])}. Per seed: {seeds}. "
                f"L2-normalised: {c['l2']['difference'] * 100:+.1f} {_ci(c['l2']['ci95'])}, "
                f"{verdict(c['l2']['sign'], label[method], label[base])}."
            )
        notes = [_leak_sentence(label[m], entry[m]["leak"], entry[m]["n_test"]) for m in methods
                 if not entry[m]["clean"]]
        notes += [f"- No study number beside {label[m]}: {entry[m]['published_note']}." for m in methods
                  if "published_note" in entry[m]]
        if notes:
            lines += ["", *notes]
        lines.append("")
    return "\n".join(lines)


def accuracy_chart(summary: dict, params):
    """K-means accuracy per dataset and method: bars at the mean, error bars of its 95% bootstrap
    interval (over test images, and seeds when there are several), and the study's published
    number with its own interval in black where the run is comparable with it."""
    import matplotlib.pyplot as plt

    from stages.lib.plotting import class_colours, method_label

    methods = params.methods
    datasets = list(summary)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(datasets) * len(methods)) + 2.2, 4.2))
    width = 0.8 / len(methods)
    colours = class_colours(len(methods))
    x = np.arange(len(datasets))
    for i, method in enumerate(methods):
        entries = [summary[d][method] for d in datasets]
        means = np.array([e["kmeans_acc"] for e in entries])
        lo = np.array([e["kmeans_acc_ci95"][0] for e in entries])
        hi = np.array([e["kmeans_acc_ci95"][1] for e in entries])
        pos = x + (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(pos, means, width, yerr=[means - lo, hi - means], capsize=3,
                      label=method_label(method, params.model.pretrained), color=colours[i])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in means], fontsize=7, label_type="center", color="white")
        for p, e in zip(pos, entries, strict=True):
            if "published" in e:
                pub = e["published"]
                ax.errorbar([p + width * 0.3], [pub["kmeans_acc"]],
                            yerr=[[pub["kmeans_acc"] - pub["ci95"][0]], [pub["ci95"][1] - pub["kmeans_acc"]]],
                            fmt="D", color="black", markersize=4, capsize=2, lw=1)
    if any("published" in summary[d][m] for d in datasets for m in methods):
        ax.errorbar([], [], yerr=[], fmt="D", color="black", markersize=4, label="the study's number")
    ax.set_xticks(x, datasets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("K-means accuracy (test set)")
    regime = "all training images" if params.shots == 0 else f"{params.shots} per class"
    seeds = len(params.seeds)
    ax.set_title(f"K-means accuracy ({regime}); error bars: 95% bootstrap CI over test images"
                 f"{f' and {seeds} seeds' if seeds > 1 else ''}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
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
    p.add_argument("--predictions", type=Path, required=True,
                   help="folder of per-run per-image results (data/predictions/)")
    p.add_argument("--curves", type=Path, required=True, help="folder of per-run loss curves (plots/train)")
    p.add_argument("--umaps", type=Path, required=True, help="folder of per-run UMAP pictures (plots/umap)")
    p.add_argument("--out", type=Path, required=True, help="folder for summary.json and summary.md (report/)")
    p.add_argument("--plots", type=Path, required=True, help="folder for the report's pictures (plots/report)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    from stages.lib.plotting import save_figure

    runs = read_runs(args.metrics, args.predictions, params.datasets, params.methods, params.seeds)
    summary = summarise_runs(runs, params)
    figures = {"summary.png": accuracy_chart(summary, params),
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
    table = markdown(summary, params)
    write_text(args.out / "summary.md", table)
    log.info("summary table -> %s, pictures -> %s", args.out / "summary.md", args.plots)  # `make demo` prints it


if __name__ == "__main__":
    main()
