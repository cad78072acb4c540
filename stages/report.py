"""report: every run of the current `datasets` x `methods` side by side: `report/summary.json`,
`report/summary.md` (with the study's published numbers) and a bar chart `plots/summary.png`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from stages.lib import cli
from stages.lib.atomic import write_json, write_text
from stages.lib.errors import PipelineError, stage_main
from stages.lib.plotting import class_colours, save_figure
from stages.lib.published import published

log = logging.getLogger("stages.report")

COLUMNS = ("kmeans_acc", "nmi", "ari")


def read_runs(metrics_dir: Path, datasets: list[str], methods: list[str], shots: int) -> list[dict]:
    """One row per dataset x method from `metrics_dir/<dataset>/<method>.json`."""
    runs = []
    for dataset in datasets:
        for method in methods:
            path = metrics_dir / dataset / f"{method}.json"
            try:
                scores = json.loads(path.read_text())
            except FileNotFoundError:
                raise PipelineError(f"{path} not found; run the evaluate stage first (dvc repro)") from None
            except json.JSONDecodeError as exc:
                raise PipelineError(f"{path} is corrupt ({exc}); re-run the evaluate stage") from None
            runs.append(
                {"dataset": dataset, "method": method, "shots": shots, **scores,
                 "published_kmeans_acc": published(dataset, method, shots)}
            )
    return runs


def markdown(runs: list[dict]) -> str:
    """The summary as a markdown table; percentages for accuracy, 3 decimals for NMI and ARI."""
    lines = [
        "| dataset | shots | method | K-means acc | NMI | ARI | test images | study's K-means acc |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        paper = "-" if r["published_kmeans_acc"] is None else f"{r['published_kmeans_acc']:.2%}"
        shots = "all" if r["shots"] == 0 else str(r["shots"])
        lines.append(
            f"| {r['dataset']} | {shots} | {r['method']} | {r['kmeans_acc']:.2%} | {r['nmi']:.3f} "
            f"| {r['ari']:.3f} | {r['n_test']} | {paper} |"
        )
    return "\n".join(lines) + "\n"


def bar_chart(runs: list[dict], datasets: list[str], methods: list[str], shots: int):
    """Grouped bars: K-means accuracy per dataset, one bar per method."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(datasets) * max(1, len(methods)) / 2), 4))
    width = 0.8 / len(methods)
    colours = class_colours(len(methods))
    x = np.arange(len(datasets))
    for i, method in enumerate(methods):
        values = [next(r["kmeans_acc"] for r in runs if r["dataset"] == d and r["method"] == method) for d in datasets]
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, label=method, color=colours[i])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=7)
    ax.set_xticks(x, datasets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("K-means accuracy (test set)")
    ax.set_title(f"K-means accuracy by method ({'all training images' if shots == 0 else f'{shots} per class'})")
    ax.legend(fontsize=8, loc="lower right")
    return fig


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("report", __doc__.splitlines()[0])
    p.add_argument("--metrics", type=Path, required=True, help="folder of per-run metrics (metrics/)")
    p.add_argument("--out", type=Path, required=True, help="folder for summary.json and summary.md (report/)")
    p.add_argument("--plot", type=Path, required=True, help="bar chart PNG (plots/summary.png)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    runs = read_runs(args.metrics, params.datasets, params.methods, params.shots)
    summary = {r["dataset"]: {} for r in runs}
    for r in runs:
        summary[r["dataset"]][r["method"]] = {k: v for k, v in r.items() if k not in ("dataset", "method")}
    write_json(args.out / "summary.json", summary)
    table = markdown(runs)
    write_text(args.out / "summary.md", table)
    save_figure(bar_chart(runs, params.datasets, params.methods, params.shots), args.plot)
    print(table, end="")
    log.info("summary -> %s, chart -> %s", args.out, args.plot)


if __name__ == "__main__":
    main()
