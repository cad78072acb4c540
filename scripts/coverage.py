"""Measured coverage of the report's 95% intervals, on simulated embeddings whose truth is known.

Every interval the report prints or will print is checked here: how often, over repeated
experiments drawn from one known model, it holds the number it is an interval for.

- `kmeans` (one run, K-means accuracy, image-level): a "trained model" is a fixed Gaussian mixture
  (one mean per class in D dimensions, unit within-class noise). A test set draws n images from it
  (n / classes per class), K-means (`stages.lib.metrics`: kmeans_n_init 10, random_state 0 as
  params.yaml) clusters them, the Hungarian matching scores them, and `stats.accuracy_ci` (10,000
  resamples, as evaluate and report) gives the interval. The truth is the procedure's mean
  accuracy on fresh test sets of that size from the same model (`truth` fresh draws).
- `paired` (method A minus method B, 1, 3, 5, 10 seeds): an image is its class and a latent
  vector shared by every model (so that runs pair image by image). A method has class means; a
  training seed perturbs each of them by Gaussian noise of size `tau` (one independent trained
  model per seed and method), scaled so that per-seed differences spread like the demo's 3-seed
  leak measurement (-2.2, +7.2, +1.1 points: standard deviation 4.7). Each experiment draws one
  test set and S seeds of each method, as a study does. Intervals: `stats.seed_interval` (the
  t-interval over seeds; none with one seed) and `stats.paired_difference` (the percentile
  bootstrap over seeds and images the report prints now; with one seed, over images only). The
  truth is the methods' mean difference over fresh seeds and test sets.
- `paired_model` (one seed, two given trained models): the image-level paired interval against
  its own truth, the two models' mean difference on fresh test sets.

    python scripts/coverage.py              # every setting, writes docs/coverage.{json,md} (docs/methods.md: how long)
    python scripts/coverage.py --workers 4  # the same numbers, in 4 processes
    python scripts/coverage.py --quick      # a small setting (its test: --quick --experiments 4 --truth 4)
    python scripts/coverage.py --out DIR    # write coverage.json and coverage.md there instead

Coverage is the share of experiments whose interval holds the truth; `se` its binomial standard
error. `docs/coverage.json` is what the report reads to print a measured coverage beside an
interval whose coverage is below 0.90.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.lib.metrics import kmeans_clusters, matched_predictions  # noqa: E402
from stages.lib.stats import accuracy_ci, paired_difference, seed_interval  # noqa: E402

DIM = 16  # embedding dimensions of the simulated mixtures
N_INIT, KMEANS_SEED, RESAMPLES, BOOT_SEED = 10, 0, 10_000, 0  # params.yaml's evaluate section
THRESHOLD = 0.90  # below this measured coverage the report prints it beside the interval


@dataclass
class KMeansSetting:
    name: str
    classes: int
    per_class: int
    separation: float  # class means ~ N(0, separation^2 I / DIM) * sqrt(DIM): distance scale vs unit noise


@dataclass
class PairedSetting:
    name: str
    classes: int
    per_class: int
    separation: float
    gain: float  # method A's class means are (1 + gain) times method B's: A a little better
    quality: float  # a seed scales its model's class means by exp(quality * N(0, 1)): training luck
    tau: float  # and moves each class mean by N(0, tau^2 I): the seed effect
    eta: float  # a model adds N(0, eta^2 I) of its own to every image's embedding (methods see images differently)
    seeds: tuple[int, ...]


# The study's test sets: 15-shot DeFungi (5 x 6), 15-shot pets (37 x 6), full DeFungi (5 x 148).
KMEANS = [
    KMeansSetting("n30_5classes", 5, 6, 0.85),
    KMeansSetting("n222_37classes", 37, 6, 1.3),
    KMeansSetting("n740_5classes", 5, 148, 0.85),
]
# The demo's test set: 10 digits, 359 images (36 per class here).
PAIRED = PairedSetting("n360_10classes", 10, 36, 1.1, 0.03, 0.05, 0.1, 0.7, (1, 3, 5, 10))
QUICK_KMEANS = [KMeansSetting("n30_5classes", 5, 6, 0.85)]
QUICK_PAIRED = PairedSetting("n60_5classes", 5, 12, 1.1, 0.03, 0.05, 0.1, 0.7, (1, 3))


def class_means(rng: np.random.Generator, classes: int, separation: float) -> np.ndarray:
    return rng.normal(scale=separation, size=(classes, DIM))


def draw_images(rng: np.random.Generator, classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """A test set: each image's class (sorted) and its latent within-class offset."""
    labels = np.repeat(np.arange(classes), per_class)
    return labels, rng.normal(size=(len(labels), DIM))


def correct_of(means: np.ndarray, labels: np.ndarray, latent: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """Per-image right/wrong of K-means accuracy for a model (`means`, and `own` per-image noise) on a test set."""
    x = means[labels] + latent if own is None else means[labels] + latent + own
    clusters = kmeans_clusters(x, len(means), n_init=N_INIT, seed=KMEANS_SEED)
    return matched_predictions(labels, clusters) == labels


def _covered(ci, truth: float) -> bool:
    return ci is not None and ci[0] <= truth <= ci[1]


def _summary(hits: list[bool], widths: list[float]) -> dict:
    k = len(hits)
    c = float(np.mean(hits))
    return {"coverage": c, "se": float(np.sqrt(c * (1 - c) / k)), "experiments": k,
            "mean_width": float(np.mean(widths))}


def _map(function, tasks: list, workers: int) -> list:
    """function(task) for every task, in order; in `workers` processes when more than one."""
    if workers <= 1:
        return [function(t) for t in tasks]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(function, tasks, chunksize=max(1, len(tasks) // (4 * workers))))


def _streams(seed: int, label: int, count: int) -> list[np.random.SeedSequence]:
    """Independent random streams, one per draw: the results do not depend on `workers`."""
    return np.random.SeedSequence([seed, label]).spawn(count)


def _kmeans_accuracy(task) -> float:
    setting, means, stream = task
    rng = np.random.default_rng(stream)
    return float(correct_of(means, *draw_images(rng, setting.classes, setting.per_class)).mean())


def _kmeans_experiment(task) -> tuple[float, list[float]]:
    setting, means, stream = task
    rng = np.random.default_rng(stream)
    correct = correct_of(means, *draw_images(rng, setting.classes, setting.per_class))
    return float(correct.mean()), accuracy_ci(correct, resamples=RESAMPLES, seed=BOOT_SEED)


def kmeans_coverage(setting: KMeansSetting, *, experiments: int, truth_draws: int, seed: int,
                    workers: int = 1) -> dict:
    """One fixed model (mixture); the truth from `truth_draws` fresh test sets; `experiments` more
    test sets, each with its image-level bootstrap interval."""
    means = class_means(np.random.default_rng([seed, 0]), setting.classes, setting.separation)
    truth = float(np.mean(_map(_kmeans_accuracy, [(setting, means, s) for s in _streams(seed, 1, truth_draws)],
                               workers)))
    runs = _map(_kmeans_experiment, [(setting, means, s) for s in _streams(seed, 2, experiments)], workers)
    hits = [_covered(ci, truth) for _, ci in runs]
    widths = [ci[1] - ci[0] for _, ci in runs]
    return {"setting": asdict(setting), "n_test": setting.classes * setting.per_class, "truth": truth,
            "truth_draws": truth_draws, "accuracy_sd": float(np.std([a for a, _ in runs], ddof=1)),
            "image_level": _summary(hits, widths)}


def _trained(rng, base: np.ndarray, scale: float, setting: PairedSetting) -> np.ndarray:
    """One training seed's model: the method's class means (`scale` times the base), spread out or
    drawn together by the seed's luck, each then moved by the seed's noise."""
    luck = np.exp(setting.quality * rng.normal())
    return scale * luck * base + rng.normal(scale=setting.tau, size=base.shape)


def _score(rng, means: np.ndarray, labels: np.ndarray, latent: np.ndarray, eta: float) -> np.ndarray:
    """A model's right/wrong on a test set: every image's shared latent plus the model's own noise."""
    return correct_of(means, labels, latent, eta * rng.normal(size=latent.shape))


def _paired_runs(task) -> tuple[np.ndarray, np.ndarray]:
    """One test set and `seeds` trained models of each method: seeds x images right/wrong of A and B."""
    setting, base, seeds, stream = task
    rng = np.random.default_rng(stream)
    labels, latent = draw_images(rng, setting.classes, setting.per_class)
    a, b = [], []
    for _ in range(seeds):
        a.append(_score(rng, _trained(rng, base, 1 + setting.gain, setting), labels, latent, setting.eta))
        b.append(_score(rng, _trained(rng, base, 1.0, setting), labels, latent, setting.eta))
    return np.array(a, dtype=float), np.array(b, dtype=float)


def _paired_experiment(task) -> dict:
    a_all, b_all = _paired_runs(task)
    per_seed = a_all.mean(axis=1) - b_all.mean(axis=1)
    out = {"spread": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None}
    for s in task[0].seeds:
        out[s] = {"seed_t": seed_interval(per_seed[:s])["ci95"],
                  "bootstrap": paired_difference(a_all[:s], b_all[:s], resamples=RESAMPLES, seed=BOOT_SEED)["ci95"]}
    return out


def paired_coverage(setting: PairedSetting, *, experiments: int, truth_draws: int, seed: int,
                    workers: int = 1) -> dict:
    """The methods' truth from `truth_draws` fresh (test set, seed) draws; `experiments` studies,
    each one test set and max(seeds) seeds per method, scored with the first S seeds for each S."""
    base = class_means(np.random.default_rng([seed, 0]), setting.classes, setting.separation)
    truth_runs = _map(_paired_runs, [(setting, base, 1, s) for s in _streams(seed, 1, truth_draws)], workers)
    truth = float(np.mean([a.mean() - b.mean() for a, b in truth_runs]))
    runs = _map(_paired_experiment, [(setting, base, max(setting.seeds), s)
                                     for s in _streams(seed, 2, experiments)], workers)
    table = {}
    for s in setting.seeds:
        table[str(s)] = {}
        for key in ("seed_t", "bootstrap"):
            cis = [r[s][key] for r in runs if r[s][key] is not None]
            table[str(s)][key] = _summary([_covered(ci, truth) for ci in cis], [ci[1] - ci[0] for ci in cis]) \
                if cis else None
    spreads = [r["spread"] for r in runs if r["spread"] is not None]
    return {"setting": asdict(setting), "n_test": setting.classes * setting.per_class, "truth": truth,
            "truth_draws": truth_draws, "per_seed_difference_sd": float(np.mean(spreads)), "seeds": table}


def _model_pair_difference(task) -> tuple[np.ndarray, np.ndarray]:
    setting, model_a, model_b, stream = task
    rng = np.random.default_rng(stream)
    labels, latent = draw_images(rng, setting.classes, setting.per_class)
    return (_score(rng, model_a, labels, latent, setting.eta).astype(float),
            _score(rng, model_b, labels, latent, setting.eta).astype(float))


def paired_model_coverage(setting: PairedSetting, *, experiments: int, truth_draws: int, seed: int,
                          workers: int = 1) -> dict:
    """One given pair of trained models (one seed each): the image-level paired interval against
    the two models' own mean difference over fresh test sets."""
    rng = np.random.default_rng([seed, 0])
    base = class_means(rng, setting.classes, setting.separation)
    model_a = _trained(rng, base, 1 + setting.gain, setting)
    model_b = _trained(rng, base, 1.0, setting)
    truth_runs = _map(_model_pair_difference, [(setting, model_a, model_b, s)
                                               for s in _streams(seed, 1, truth_draws)], workers)
    truth = float(np.mean([a.mean() - b.mean() for a, b in truth_runs]))
    runs = _map(_model_pair_difference, [(setting, model_a, model_b, s)
                                         for s in _streams(seed, 2, experiments)], workers)
    cis = [paired_difference(a, b, resamples=RESAMPLES, seed=BOOT_SEED)["ci95"] for a, b in runs]
    return {"setting": asdict(setting), "n_test": setting.classes * setting.per_class, "truth": truth,
            "truth_draws": truth_draws,
            "image_level": _summary([_covered(ci, truth) for ci in cis], [ci[1] - ci[0] for ci in cis])}


def _progress(name: str, part: dict, timings: dict) -> None:
    """Each setting's result on stderr as it is done: a long run shows where it is."""
    print(f"{name} ({timings[name]} s): {json.dumps(part)}", file=sys.stderr, flush=True)


def run(*, quick: bool, experiments: int, truth_draws: int, seed: int, workers: int = 1) -> dict:
    started = time.perf_counter()
    cpu = time.process_time()
    kmeans_settings, paired = (QUICK_KMEANS, QUICK_PAIRED) if quick else (KMEANS, PAIRED)
    out: dict = {"nominal": 0.95, "threshold": THRESHOLD, "quick": quick, "seed": seed,
                 "experiments": experiments, "truth_draws": truth_draws,
                 "kmeans_n_init": N_INIT, "bootstrap_resamples": RESAMPLES, "kmeans": {}}
    timings = {}
    for i, s in enumerate(kmeans_settings):
        t = time.perf_counter()
        out["kmeans"][s.name] = kmeans_coverage(s, experiments=experiments, truth_draws=truth_draws,
                                                seed=seed * 100 + i, workers=workers)
        timings[f"kmeans/{s.name}"] = round(time.perf_counter() - t, 1)
        _progress(f"kmeans/{s.name}", out["kmeans"][s.name], timings)
    t = time.perf_counter()
    out["paired"] = {paired.name: paired_coverage(paired, experiments=experiments, truth_draws=truth_draws,
                                                  seed=seed * 100 + 10, workers=workers)}
    timings[f"paired/{paired.name}"] = round(time.perf_counter() - t, 1)
    _progress(f"paired/{paired.name}", out["paired"][paired.name], timings)
    t = time.perf_counter()
    out["paired_model"] = {paired.name: paired_model_coverage(paired, experiments=experiments,
                                                              truth_draws=truth_draws, seed=seed * 100 + 20,
                                                              workers=workers)}
    timings[f"paired_model/{paired.name}"] = round(time.perf_counter() - t, 1)
    out["below_threshold"] = below_threshold(out)
    # CPU time of this process and of finished worker processes (os.times: children's too).
    import os

    times = os.times()
    out["seconds"] = {"wall": round(time.perf_counter() - started, 1),
                      "cpu": round(time.process_time() - cpu + times.children_user + times.children_system, 1),
                      "workers": workers, "parts": timings}
    return out


def below_threshold(result: dict) -> list[str]:
    """The intervals whose measured coverage is below THRESHOLD, as `kind/setting[/seeds/interval]`."""
    low = []
    for name, r in result["kmeans"].items():
        if r["image_level"]["coverage"] < THRESHOLD:
            low.append(f"kmeans/{name}")
    for name, r in result["paired"].items():
        for s, by in r["seeds"].items():
            for key, summary in by.items():
                if summary is not None and summary["coverage"] < THRESHOLD:
                    low.append(f"paired/{name}/{s}/{key}")
    for name, r in result["paired_model"].items():
        if r["image_level"]["coverage"] < THRESHOLD:
            low.append(f"paired_model/{name}")
    return low


def _cell(summary: dict | None) -> str:
    if summary is None:
        return "none (no method-level claim)"
    return f"{summary['coverage']:.3f} ± {summary['se']:.3f} (width {summary['mean_width'] * 100:.1f} pts)"


def markdown(result: dict) -> str:
    lines = [
        f"# Measured coverage at nominal 0.95 ({'quick' if result['quick'] else 'full'} run, "
        f"{result['seconds']['wall']} s wall, {result['seconds']['cpu']} s CPU)", "",
        "| interval | test images | truth | coverage ± se (mean width) |", "| --- | --- | --- | --- |",
    ]
    for r in result["kmeans"].values():
        lines.append(f"| K-means accuracy, image-level bootstrap ({r['setting']['classes']} classes) | {r['n_test']} | "
                     f"{r['truth'] * 100:.1f}% | {_cell(r['image_level'])} |")
    for r in result["paired_model"].values():
        lines.append(f"| A minus B, one seed, image-level paired bootstrap, truth: these two models | {r['n_test']} | "
                     f"{r['truth'] * 100:+.1f} pts | {_cell(r['image_level'])} |")
    for r in result["paired"].values():
        for s, by in r["seeds"].items():
            lines.append(f"| A minus B, {s} seed(s), t-interval over seeds, truth: the methods | {r['n_test']} | "
                         f"{r['truth'] * 100:+.1f} pts | {_cell(by['seed_t'])} |")
            lines.append(f"| A minus B, {s} seed(s), percentile bootstrap over seeds and images, truth: the methods | "
                         f"{r['n_test']} | {r['truth'] * 100:+.1f} pts | {_cell(by['bootstrap'])} |")
        lines.append("")
        lines.append(f"Per-seed differences spread with standard deviation {r['per_seed_difference_sd'] * 100:.1f} "
                     "points (the demo's three: 4.7).")
    low = result["below_threshold"]
    lines += ["", "Below 0.90: " + (", ".join(low) if low else "none") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small setting in seconds (the script's own test)")
    p.add_argument("--experiments", type=int, help="repeated experiments per setting (default 120; quick 40)")
    p.add_argument("--truth", type=int, help="fresh draws that estimate each truth (default 150; quick 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (the numbers do not depend on it)")
    p.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for coverage.json and coverage.md")
    args = p.parse_args(argv)
    experiments = args.experiments or (40 if args.quick else 120)
    truth = args.truth or (40 if args.quick else 150)
    result = run(quick=args.quick, experiments=experiments, truth_draws=truth, seed=args.seed,
                 workers=args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "coverage.md").write_text(text)
    print(text, end="")
    return result


if __name__ == "__main__":
    main()
