"""report: every run of the current `datasets` x `methods` x `seeds` side by side, with its
uncertainty, its chance level and its leaks, led by one primary question.

Writes `report/summary.json` (DVC metrics: per dataset and method the mean of every metric over
the training seeds, the 95% bootstrap interval of K-means accuracy over test images and seeds and
its chance level, the same on L2-normalised embeddings, the leak counts, the study's number where
the run is comparable with it, and the comparisons of each method with the baseline on the same
test images: the primary one (`primary` in params.yaml) and the secondary ones, Holm-adjusted; a
method-level verdict only from several training seeds), `report/summary.md`, and into the plots
folder a chart of K-means accuracy with its intervals, a grid of the UMAP pictures and the
training curves of every run overlaid per dataset.

Beside every interval whose measured coverage is below 0.90 in the closest setting measured, the
report prints that coverage. It reads it from `docs/coverage.json` (written by
`scripts/coverage.py`; a dependency of the stage in dvc.yaml), so that re-measuring coverage
updates the report and no copy of the table can go stale.

This stage reads the files and writes the markdown; the numbers are computed in
`stages.lib.summary`, the figures drawn in `stages.lib.report_figures`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import write_json, write_text
from stages.lib.errors import PipelineError, stage_main
from stages.lib.leaks import is_clean
from stages.lib.summary import (
    METRICS,
    PERCENT,
    VIEWS,
    Comparison,
    DatasetSummary,
    MethodSummary,
    Run,
    ViewStats,
    summarise_runs,
    summary_json,
    verdict,
)

# pandas and matplotlib (stages.lib.report_figures) are imported where they are used, so that
# `python -m stages.report --help` answers at once.

log = logging.getLogger("stages.report")

# The measured coverage of the report's intervals (scripts/coverage.py writes it).
COVERAGE = Path(__file__).resolve().parent.parent / "docs" / "coverage.json"


def read_coverage(path: Path = COVERAGE) -> dict:
    """docs/coverage.json: the measured coverage of every interval the report prints."""
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; restore it (git checkout docs/coverage.json) or measure it with "
                            "python scripts/coverage.py") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); restore it (git checkout docs/coverage.json)") from None
    missing = [k for k in ("threshold", "kmeans", "paired", "paired_model") if k not in table]
    if missing:
        raise PipelineError(f"{path} has no {', '.join(missing)}; re-run python scripts/coverage.py")
    return table


def read_runs(
    metrics_dir: Path, predictions_dir: Path, datasets: list[str], methods: list[str], seeds: list[int]
) -> list[Run]:
    """One `Run` per dataset x method x seed: its metrics JSON and its per-image predictions."""
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
                missing = [k for k in ("kmeans_acc", "kmeans_acc_chance", "l2", "leak") if k not in scores]
                if missing:
                    raise PipelineError(f"{path} has no {', '.join(missing)}; re-run the evaluate stage (dvc repro)")
                table = predictions_dir / dataset / method / f"seed{seed}.csv"
                try:
                    predictions = pd.read_csv(table, usecols=["row", "correct", "correct_l2"])
                except FileNotFoundError:
                    raise PipelineError(f"{table} not found; run the evaluate stage first (dvc repro)") from None
                except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                    raise PipelineError(f"{table} is corrupt ({exc}); re-run the evaluate stage") from None
                runs.append(Run(dataset, method, seed, scores, predictions))
    return runs


def read_curves(curve_dir: Path, dataset: str, methods: list[str], seeds: list[int]) -> dict:
    """The loss curve of every run of `dataset`, `[method][seed]`: a table, or None for a run that
    did not train (an empty curve)."""
    import pandas as pd

    tables: dict = {}
    for method in methods:
        for seed in seeds:
            path = curve_dir / dataset / method / f"seed{seed}.csv"
            try:
                table = pd.read_csv(path)
            except FileNotFoundError:
                raise PipelineError(f"{path} not found; run the train stage first (dvc repro)") from None
            except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                raise PipelineError(f"{path} is corrupt ({exc}); re-run the train stage") from None
            tables.setdefault(method, {})[seed] = table if len(table) else None
    return tables


def umap_pictures(umaps: Path, datasets: list[str], methods: list[str], seed: int) -> list[list[Path]]:
    """The UMAP picture of each dataset (rows) and method (columns) for one seed."""
    grid = [[umaps / f"{dataset}_{method}_seed{seed}.png" for method in methods] for dataset in datasets]
    for path in (p for row in grid for p in row):
        if not path.is_file():
            raise PipelineError(f"{path} not found; run the umap stage first (dvc repro)")
    return grid


def _pct(x: float, digits: int = 1) -> str:
    return f"{x * 100:.{digits}f}%"


def _ci(ci: list[float]) -> str:
    return f"[{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]"


def _accuracy_cell(stats: ViewStats) -> str:
    """K-means accuracy, its interval (with its measured coverage where below 0.90) and its chance level."""
    text = f"{_pct(stats.mean['kmeans_acc'])} {_ci(stats.kmeans_acc_ci95)}"
    if stats.coverage is not None:
        text += f" ({stats.coverage.text()})"
    return text + f"; chance {_pct(stats.chance.mean)}, p95 {_pct(stats.chance.p95)}"


def _cell(stats: ViewStats, metric: str) -> str:
    if metric == "kmeans_acc":
        return _accuracy_cell(stats)
    scale, unit, digits = (100, "%", 1) if metric in PERCENT else (1, "", 3)
    text = f"{stats.mean[metric] * scale:.{digits}f}{unit}"
    if metric in stats.seed_std:
        text += f" ± {stats.seed_std[metric] * scale:.{digits}f}"
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


def _study_cell(entry: MethodSummary) -> str:
    p = entry.published
    return f"{_pct(p.kmeans_acc, 2)} {_ci(p.ci95)} ({p.correct:,}/{p.n_test:,})" if p else "-"


def _comparison_sentence(c: Comparison, label: dict[str, str]) -> str:
    """`c`'s difference, the interval its verdict uses (and what that interval is over), then the verdict."""
    text = f"{c.difference * 100:+.1f} points, "
    if c.interval == "images":
        text += f"image-level 95% CI {_ci(c.ci95)} (two trained models, one seed each)"
    else:
        text += f"95% CI {_ci(c.ci95)} over {c.seeds} seeds (t, {c.seeds - 1} df)"
    if c.coverage is not None:
        text += f", {c.coverage.text()}"
    if c.ci_simultaneous is not None:
        text += f", simultaneous 95% CI {_ci(c.ci_simultaneous)}, p = {c.p_value:.3g}, Holm-adjusted p = {c.p_holm:.3g}"
    text += f": {verdict(c, label)}."
    if c.seeds > 1:
        text += " Per seed (image-level): " + "; ".join(
            f"seed {s}: {d.difference * 100:+.1f} {_ci(d.ci95)}" for s, d in c.per_seed.items()) + "."
    return text


def markdown(summary: dict[str, DatasetSummary], params) -> str:
    """The summary as markdown: per dataset a table, the primary question, the secondary
    comparisons, then the notes."""
    methods, shots = params.methods, params.shots
    primary = params.primary
    from stages.lib.plotting import method_label

    regime = "all training images" if shots == 0 else f"{shots} training images per class"
    label = {m: method_label(m, params.model.pretrained) for m in methods}
    lines = [
        f"# Results ({regime})", "",
        "K-means accuracy with its 95% bootstrap interval over test images (and over training seeds when there are "
        "several) and its chance level (the same clustering matched to permuted labels: mean and 95th percentile, "
        "p95); other metrics: mean ± standard deviation over seeds. `L2` repeats K-means on L2-normalised "
        "embeddings. `leak`: test images (or their source groups) the training could see. `study`: the published "
        "number with its own interval, only where the run matches the study's conditions. Where an interval's "
        "measured coverage (docs/coverage.json) is below 0.90 in the closest setting measured, it is printed "
        "beside it.", "",
        f"The primary question (`primary` in params.yaml) is {label.get(primary.better, primary.better)} minus "
        f"{label.get(primary.than, primary.than)}, K-means accuracy on {VIEWS[primary.view]}, per dataset; every "
        "other comparison is secondary, with Holm-adjusted p-values and Bonferroni simultaneous intervals over the "
        "dataset's secondary comparisons. A method-level verdict comes from training seeds only (a t-interval over "
        "the per-seed paired differences); with one seed an interval compares two trained models and no "
        "method-level claim is made. An accuracy at or below its chance level's 95th percentile gets no \"better "
        "than\" claim.", "",
    ]
    for dataset, data in summary.items():
        entries = data.methods
        first = entries[methods[0]]
        lines += [f"## {dataset} ({first.n_test:,} test images, {first.seeds} seed(s))", ""]
        lines.append("| method | " + " | ".join(METRICS.values()) + " | L2: K-means acc | leak | study |")
        lines.append("| --- " * (len(METRICS) + 4) + "|")
        for method in methods:
            e = entries[method]
            raw, l2 = e.views["raw"], e.views["l2"]
            cells = " | ".join(_cell(raw, m) for m in METRICS)
            lines.append(f"| {label[method]} | {cells} | {_accuracy_cell(l2)} | {_leak_cell(e.leak)} | "
                         f"{_study_cell(e)} |")
        lines.append("")
        lines += _budget_lines(entries, methods, label)
        main = data.primary()
        if main is not None:
            lines += [f"**Primary question**: {label[main.method]} minus {label[main.than]}, K-means accuracy on "
                      f"{VIEWS[main.view]}: {_comparison_sentence(main, label)}", ""]
        else:
            lines += [f"**No primary question here**: {data.primary_note}.", ""]
        others = [c for views in data.comparisons.values() for c in views.values() if c.role == "secondary"]
        if others:
            lines.append("Secondary comparisons:")
            lines += [f"- secondary: {label[c.method]} vs {label[c.than]}, {VIEWS[c.view]}: "
                      f"{_comparison_sentence(c, label)}" for c in others]
        notes = [_leak_sentence(label[m], entries[m].leak, entries[m].n_test) for m in methods if not entries[m].clean]
        notes += [f"- {label[m]}'s K-means accuracy on {VIEWS[view]} is inside its chance band (at or below the "
                  f"chance level's 95th percentile) on seed(s) {', '.join(str(s) for s in stats.chance.inside_band)}: "
                  "no \"better than\" claim rests on it."
                  for m in methods for view, stats in entries[m].views.items() if stats.chance.inside_band]
        notes += [f"- No study number beside {label[m]}: {entries[m].published_note}." for m in methods
                  if entries[m].published_note is not None]
        if notes:
            lines += ["", *notes]
        lines.append("")
    return "\n".join(lines)


def _budget_lines(entries: dict[str, MethodSummary], methods: list[str], label: dict[str, str]) -> list[str]:
    """Under `train.budget` steps or images: what each method used (per seed where the seeds differ)."""
    used = [(m, entries[m].budget) for m in methods if entries[m].budget is not None]
    if not used:
        return []

    def span(values: list[int]) -> str:
        low, high = min(values), max(values)
        return f"{low:,}" if low == high else f"{low:,}-{high:,}"

    kind, amount = used[0][1]["kind"], used[0][1]["amount"]
    parts = [f"{label[m]} {span(b['steps'])} steps, {span(b['images'])} images" for m, b in used]
    return [f"**Budget** (`train.budget: {kind}`, {amount:,} {kind} per run; images passed forward in training, "
            f"each image of a triplet counted): {'; '.join(parts)}.", ""]


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
    from stages.lib.report_figures import accuracy_chart, curves, umap_grid

    runs = read_runs(args.metrics, args.predictions, params.datasets, params.methods, params.seeds)
    summary = summarise_runs(runs, params, read_coverage())
    figures = {
        "summary.png": accuracy_chart(summary, params.methods, len(params.seeds), params.shots,
                                      params.model.pretrained),
        "umap_grid.png": umap_grid(umap_pictures(args.umaps, params.datasets, params.methods, params.seeds[0])),
    }
    for dataset in params.datasets:
        tables = read_curves(args.curves, dataset, params.methods, params.seeds)
        figures[f"curves_{dataset}.png"] = curves(dataset, tables, params.model.pretrained)
    args.plots.mkdir(parents=True, exist_ok=True)
    for stale in args.plots.glob("*.png"):
        if stale.name not in figures:
            stale.unlink()
    for name, fig in figures.items():
        save_figure(fig, args.plots / name)
    write_json(args.out / "summary.json", summary_json(summary))
    write_text(args.out / "summary.md", markdown(summary, params))
    log.info("summary table -> %s, pictures -> %s", args.out / "summary.md", args.plots)  # `make demo` prints it


if __name__ == "__main__":
    main()
