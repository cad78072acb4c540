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
from stages.lib.summary import summarise_runs, verdict, with_tuning
from stages.lib.summary_records import (
    METRICS,
    PERCENT,
    VIEWS,
    Comparison,
    DatasetSummary,
    MethodSummary,
    Run,
    ViewStats,
    summary_json,
)
from stages.lib.tables import read_csv, read_json

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
    runs = []
    for dataset in datasets:
        for method in methods:
            for seed in seeds:
                path = metrics_dir / dataset / method / f"seed{seed}.json"
                scores = read_json(path, "evaluate")
                missing = [k for k in ("kmeans_acc", "kmeans_acc_chance", "l2", "leak") if k not in scores]
                if missing:
                    raise PipelineError(f"{path} has no {', '.join(missing)}; re-run the evaluate stage (dvc repro)")
                table = predictions_dir / dataset / method / f"seed{seed}.csv"
                predictions = read_csv(table, "evaluate", usecols=["row", "correct", "correct_l2"])
                runs.append(Run(dataset, method, seed, scores, predictions))
    return runs


def read_curves(curve_dir: Path, dataset: str, methods: list[str], seeds: list[int]) -> dict:
    """The loss curve of every run of `dataset`, `[method][seed]`: a table, or None for a run that
    did not train (an empty curve)."""
    tables: dict = {}
    for method in methods:
        for seed in seeds:
            path = curve_dir / dataset / method / f"seed{seed}.csv"
            table = read_csv(path, "train")
            tables.setdefault(method, {})[seed] = table if len(table) else None
    return tables


def read_tuned(folder: Path, datasets: list[str], methods: list[str]) -> dict[tuple[str, str], dict]:
    """The tune stage's file of every dataset x method (`data/tuned/<dataset>/<method>.json`)."""
    records = {}
    for dataset in datasets:
        for method in methods:
            path = folder / dataset / f"{method}.json"
            try:
                records[dataset, method] = json.loads(path.read_text())
            except FileNotFoundError:
                raise PipelineError(f"{path} not found; run the tune stage first (dvc repro)") from None
            except json.JSONDecodeError as exc:
                raise PipelineError(f"{path} is corrupt ({exc}); re-run the tune stage") from None
    return records


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


SELECT_WORDS = {
    "loss": "each method's own lowest validation loss",
    "last": "the last epoch",
    "val_kmeans": "the best K-means accuracy on the validation images' embeddings",
    "val_map_at_r": "the best MAP@R on the validation images' embeddings",
    "val_precision_at_1": "the best precision@1 on the validation images' embeddings",
}


def _select_sentence(entries: dict[str, MethodSummary], methods: list[str], label: dict[str, str]) -> str:
    """Which rule (`train.select`) kept each run's epoch, methods with the same rule together."""
    by_rule: dict[str | None, list[str]] = {}
    for m in methods:
        by_rule.setdefault(entries[m].select, []).append(label[m])
    parts = [f"{', '.join(names)}: `{rule}` ({SELECT_WORDS.get(rule, rule)})" for rule, names in by_rule.items()
             if rule is not None]
    if None in by_rule:
        parts.append(f"{', '.join(by_rule[None])}: no training")
    return "Epoch kept (`train.select`): " + "; ".join(parts) + "."


def _tuning_sentence(entries: dict[str, MethodSummary], methods: list[str], label: dict[str, str]) -> str | None:
    """The values each tuned method trained with, and its search's best and worst validation score."""
    tuned = [(m, entries[m].tuned) for m in methods if entries[m].tuned is not None]
    if not tuned:
        return None
    t = tuned[0][1]
    parts = [f"{label[m]}: " + ", ".join(f"`{k}` {v:.3g}" for k, v in rec["values"].items())
             + f" (validation {rec['metric']} of its finished trials: best {rec['best']:.3f}, worst {rec['worst']:.3f})"
             for m, rec in tuned]
    return (f"Tuned (`tune`: {t['trials']} trials of {t['epochs']} epochs per method, each scored on the validation "
            "images; the values trained with): " + "; ".join(parts) + ".")


def _study_cell(entry: MethodSummary) -> str:
    p = entry.published
    if not p:
        return "-"
    wrong = entry.paper.mislabelled.count(p.n_test) if entry.paper else "not counted"
    return f"{_pct(p.kmeans_acc, 2)} {_ci(p.ci95)} ({p.correct:,}/{p.n_test:,}; mislabelled: {wrong})"


def _study_sentence(label: str, entry: MethodSummary) -> str | None:
    """Whether the study's number is comparable with this run, in one line, with the mislabelled
    test images behind it (None where the study published no number for this run)."""
    paper = entry.paper
    if paper is None:
        return None
    number = f"{_pct(paper.accuracy, 2)} ({paper.correct:,}/{paper.n_test:,}; {paper.mislabelled.text(paper.n_test)})"
    if entry.published is None:
        return f"- The study's number for {label}, {number}, is not comparable with this run: {entry.published_note}."
    return (f"- The study's number for {label}, {number}, is comparable: this run was scored the study's way too "
            f"(evaluate.labels: study; {entry.mislabelled:,} of its {entry.n_test:,} test images mislabelled).")


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
    unseen = any(e.protocol for data in summary.values() for e in data.methods.values())  # one protocol: one_protocol
    lines = [
        f"# Results ({regime}{', unseen classes' if unseen else ''})", "",
    ]
    if unseen:
        lines += [
            "**Protocol: unseen classes** (`split.classes: unseen`) for every run below: each model was trained and "
            "validated on one half of its dataset's classes and tested on every image of the other half, never "
            "trained on; K-means uses k = the test classes. These numbers are not comparable with seen-class runs "
            "(the study's protocol), nor with the study's published numbers.", "",
        ]
    else:
        lines += [
            "**Protocol: seen classes** (`split.classes: seen`, the study's) for every run below: the test images "
            "are of the classes each model was trained on.", "",
        ]
    lines += [
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
        if first.protocol:
            halves = first.protocol
            how = ("the dataset's standard first half" if halves["halves"] == "first_half"
                   else f"a random half drawn with seed {halves['seed']}")
            lines += [f"Unseen classes ({how}): trained and validated on {len(halves['train_classes'])} "
                      f"({', '.join(halves['train_classes'])}); tested on {len(halves['test_classes'])} "
                      f"({', '.join(halves['test_classes'])}).", ""]
        lines.append("| method | " + " | ".join(METRICS.values()) + " | L2: K-means acc | leak | study |")
        lines.append("| --- " * (len(METRICS) + 4) + "|")
        for method in methods:
            e = entries[method]
            raw, l2 = e.views["raw"], e.views["l2"]
            cells = " | ".join(_cell(raw, m) for m in METRICS)
            lines.append(f"| {label[method]} | {cells} | {_accuracy_cell(l2)} | {_leak_cell(e.leak)} | "
                         f"{_study_cell(e)} |")
        lines += ["", _select_sentence(entries, methods, label), ""]
        tuned = _tuning_sentence(entries, methods, label)
        if tuned:
            lines += [tuned, ""]
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
        notes += [line for m in methods if (line := _study_sentence(label[m], entries[m])) is not None]
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
    p.add_argument("--tuned", type=Path, default=None,
                   help="folder of the tune stage's files (data/tuned); default: no tuning shown")
    p.add_argument("--out", type=Path, required=True, help="folder for summary.json and summary.md (report/)")
    p.add_argument("--plots", type=Path, required=True, help="folder for the report's pictures (plots/report)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    from stages.lib.plotting import save_figure
    from stages.lib.report_figures import accuracy_chart, curves, umap_grid

    runs = read_runs(args.metrics, args.predictions, params.datasets, params.methods, params.seeds)
    summary = summarise_runs(runs, params, read_coverage())
    if args.tuned is not None:
        summary = with_tuning(summary, read_tuned(args.tuned, params.datasets, params.methods))
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
