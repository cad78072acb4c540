"""`make bench`: the study's way against ours on this machine's CPU, in one run.

1. Data path: images per second delivered to the model over a triplet epoch of generated
   500x375 JPEGs at 224x224. The study's way decodes, resizes, flips and normalises every image
   on every read in a 2-worker DataLoader; ours decodes once into the cache (`decode_to_file`,
   timed separately) and per batch gathers from the memory map, `to_device`, `normalise`.
   Both measured from the second epoch on; no model.
2. One training epoch (train + validation pass) per method with timm's `test_convnext` at
   64x64: the study's loader and three forward passes per triplet against `trainer.fit`.
3. Stage timings after a warm-up: `embed_pixels`, `clustering_scores` (K-means, 10 inits) and
   UMAP on 10,000 x 768 embeddings; UMAP on 3,000 points the way umap-learn chooses (its exact
   pairwise path below 4,096 points) against ours (`stages.umap.project`: scikit-learn's exact
   nearest neighbours handed to UMAP as a precomputed graph).
4. The evaluate stage's metrics as a whole (`benchmarks/bench_evaluate.py`: K-means, its spread,
   the exact retrieval, and the L2-normalised pass) on 10,000, 30,000 and 100,000 x 768
   embeddings in 100 classes, each size in its own process: seconds and peak resident memory,
   and how both grow with the number of points.

Each figure is the fastest of a few repetitions after a warm-up (other processes on a shared
machine only ever slow a run down); the load average at the start is printed with the table.
Each figure is printed, and written to `--json`, as soon as it is measured; a part that fails is
reported as failed and the rest still runs; a figure that comes out zero, negative or missing is
printed as such, never divided by. Prints a table and ends with `data path speed-up: <x>x`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the table; read at import

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# First: `stages` sets the process options the pipeline runs with, before torch starts.
import stages  # noqa: E402,F401

# isort: split
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

from benchmarks import bench_evaluate  # noqa: E402
from benchmarks import study_baseline as study  # noqa: E402
from benchmarks.bench_evaluate import fault, growth_text  # noqa: E402
from stages.lib.decoded import decode_to_file, open_decoded  # noqa: E402
from stages.lib.device import normalise, to_device  # noqa: E402
from stages.lib.embedding import embed_pixels  # noqa: E402
from stages.lib.methods.classification import Classification, ClassificationParams  # noqa: E402
from stages.lib.methods.triplet import Triplet, TripletParams  # noqa: E402
from stages.lib.metrics import clustering_scores  # noqa: E402
from stages.lib.params import load_params  # noqa: E402
from stages.lib.trainer import SplitData, fit  # noqa: E402
from stages.umap import project  # noqa: E402

CPU = torch.device("cpu")
N_CLASSES = 10


def machine() -> dict:
    """CPU model, cores, library versions, and the load when the run started."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:  # the kernel's mode, e.g. "always [madvise] never"
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        thp = "unavailable"
    return {
        "cpu": model,
        "cores": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "huge_pages": f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, kernel THP {thp}",
    }


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


# --- 1. the data path -------------------------------------------------------------------------


def study_data_epoch(loader) -> int:
    """One pass of the study's triplet loader; the images it delivered."""
    delivered = 0
    for anchor, positive, negative in loader:
        delivered += len(anchor) + len(positive) + len(negative)
    return delivered


def ours_data_epoch(pixels: np.ndarray, labels: np.ndarray, method: Triplet, epoch: int, hflip: float = 0.5) -> int:
    """One pass as the trainer feeds the model: sample, gather, `to_device`, `normalise` with flips."""
    rng = np.random.default_rng([0, epoch])
    delivered = 0
    x = None  # refilled in place, as the trainer does
    for index in method.epoch_batches(labels, rng):
        images = to_device(pixels[index], CPU)
        flip = torch.from_numpy(rng.random(len(index)) < hflip)
        x = normalise(images, flip, out=x)
        delivered += len(x)
    return delivered


def ours_host_epoch(pixels: np.ndarray, labels: np.ndarray, method: Triplet, epoch: int) -> int:
    """The host's share when `normalise` runs on a GPU: sample, gather, `to_device` (a view here)."""
    rng = np.random.default_rng([0, epoch])
    delivered = 0
    for index in method.epoch_batches(labels, rng):
        delivered += len(to_device(pixels[index], CPU))
        rng.random(len(index))  # the flips
    return delivered


def best_rate(epoch_fn, epochs: int) -> float:
    """Images per second of the fastest of `epochs` timed epochs, after one untimed warm-up epoch.
    The fastest, because other processes on a shared machine only ever slow an epoch down."""
    rates = []
    for epoch in range(epochs + 1):
        seconds, delivered = timed(epoch_fn, epoch)
        if epoch:
            if seconds > 0:  # a clock that did not move says nothing
                rates.append(delivered / seconds)
    return max(rates) if rates else float("nan")


def bench_data_path(paths: list[Path], labels: np.ndarray, work: Path, epochs: int) -> dict:
    lines, members = study.triplet_lines(paths, labels)
    loader = study.loader(study.TripletListDataset(lines, members, study.study_transform(224)), batch_size=64)
    study_ips = best_rate(lambda epoch: study_data_epoch(loader), epochs)  # workers start every epoch, as then

    decode_s, _ = timed(decode_to_file, paths, 224, work / "decoded224.npy")
    pixels = open_decoded(work / "decoded224.npy", expected_rows=len(paths), size=224)
    method = Triplet(TripletParams(batch_size=64, margin=1.0), N_CLASSES, 768)
    ours_ips = best_rate(lambda epoch: ours_data_epoch(pixels, labels, method, epoch), epochs)
    host_ips = best_rate(lambda epoch: ours_host_epoch(pixels, labels, method, epoch), epochs)
    return {
        "images_per_epoch": 3 * len(paths),
        "study_images_per_s": study_ips,
        "ours_images_per_s": ours_ips,
        "speedup": ours_ips / study_ips if study_ips > 0 else None,
        "ours_host_only_images_per_s": host_ips,
        "decode_once_s": decode_s,
        "decode_once_images_per_s": len(paths) / decode_s if decode_s > 0 else None,
    }


# --- 2. one training epoch --------------------------------------------------------------------


def _backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_convnext", pretrained=False, num_classes=0)


def study_train_epoch(method: str, train_paths, train_labels, val_paths, val_labels, size: int):
    """One epoch the study's way (train + validation pass), as a function of no arguments."""
    backbone = _backbone()
    transform = study.study_transform(size)
    if method == "triplet":
        train_set = study.TripletListDataset(*study.triplet_lines(train_paths, train_labels), transform)
        val_set = study.TripletListDataset(*study.triplet_lines(val_paths, val_labels, seed=1), transform)
        train_loader, val_loader = study.loader(train_set, 64), study.loader(val_set, 64, shuffle=False)
        opt = study.optimizer(backbone.parameters())

        def epoch() -> None:
            study.triplet_epoch(backbone, train_loader, opt, CPU)
            study.triplet_validation(backbone, val_loader, CPU)
    else:
        head = torch.nn.Linear(backbone.num_features, N_CLASSES)
        train_set = study.ImageListDataset(train_paths, train_labels, transform)
        val_set = study.ImageListDataset(val_paths, val_labels, transform)
        train_loader, val_loader = study.loader(train_set, 128), study.loader(val_set, 128, shuffle=False)
        opt = study.optimizer([*backbone.parameters(), *head.parameters()])

        def epoch() -> None:
            study.classification_epoch(backbone, head, train_loader, opt, CPU)
            study.classification_validation(backbone, head, val_loader, CPU)

    return epoch


def ours_train_epoch(method_name: str, train: SplitData, val: SplitData):
    """One epoch ours, `trainer.fit` with `epochs: 1` (train + validation pass), as a function of no arguments."""
    defaults = load_params(ROOT / "params.yaml")
    params = dataclasses.replace(defaults.train, epochs=1, device="cpu", precision="fp32", compile=False)
    if method_name == "triplet":
        method = Triplet(TripletParams(batch_size=64, margin=1.0), N_CLASSES, 64)
    else:
        method = Classification(ClassificationParams(batch_size=128), N_CLASSES, 64)
    backbone = _backbone()
    return lambda: fit(method, backbone, train, val, params, seed=0, device=CPU)


def bench_training(paths: list[Path], labels: np.ndarray, work: Path, size: int, n_val: int, repeats: int) -> dict:
    """Per method: a warm-up epoch each way, then `repeats` timed epochs, alternating the two ways so
    that a busy spell on the machine hits both; the fastest epoch of each way."""
    decode_to_file(paths, size, work / f"decoded{size}.npy")
    pixels = np.ascontiguousarray(open_decoded(work / f"decoded{size}.npy", size=size))  # split_pixels copies too
    val_paths, train_paths = paths[:n_val], paths[n_val:]
    val_labels, train_labels = labels[:n_val], labels[n_val:]
    train = SplitData(pixels[n_val:], train_labels)
    val = SplitData(pixels[:n_val], val_labels)
    out = {"train_images": len(train_paths), "val_images": n_val, "image_size": size, "repeats": repeats}
    for method in ("classification", "triplet"):
        study_epoch = study_train_epoch(method, train_paths, train_labels, val_paths, val_labels, size)
        ours_epoch = ours_train_epoch(method, train, val)
        study_epoch(), ours_epoch()  # warm-up
        study_s, ours_s = [], []
        for _ in range(repeats):
            study_s.append(timed(study_epoch)[0])
            ours_s.append(timed(ours_epoch)[0])
        out[method] = {"study_s": min(study_s), "ours_s": min(ours_s),
                       "speedup": min(study_s) / min(ours_s) if min(ours_s) > 0 else None}
    return out


# --- 3. the later stages ----------------------------------------------------------------------


def clustered(n: int, dim: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` float32 points in `n_classes` overlapping Gaussian blobs: K-means finds them (accuracy
    ~0.96) but needs ~15 iterations per initialisation, as with real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 0.08, (n_classes, dim))
    labels = rng.integers(0, n_classes, n)
    points = centres[labels] + rng.normal(0.0, 0.6, (n, dim))
    return points.astype(np.float32), labels


def umap_exact(points: np.ndarray, p) -> np.ndarray:
    """UMAP as umap-learn chooses by itself: below 4,096 points, its exact pairwise path."""
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=p.n_neighbors, min_dist=p.min_dist, metric=p.metric,
                            random_state=p.seed, force_approximation_algorithm=False)
        return reducer.fit_transform(points)


def bench_stages(decoded64: Path, n_embed: int, n_points: int, n_umap_small: int, figures: Figures | None = None
                 ) -> dict:
    """Embed, K-means and UMAP timings; each one recorded (and printed) as soon as it is measured."""
    warnings.filterwarnings("ignore", message="Graph is not fully connected")  # tiny warm-up inputs
    out: dict = {}

    def done(key: str, value: dict) -> None:
        out[key] = value
        print(f"  {key}: " + ", ".join(f"{k} {number(v, '.2f') if isinstance(v, float) else v}"
                                       for k, v in value.items()), flush=True)
        if figures is not None:
            figures.record("stages", out)

    pixels64 = np.ascontiguousarray(open_decoded(decoded64, size=64))
    backbone = _backbone()
    images = pixels64[np.arange(n_embed) % len(pixels64)]
    embed_pixels(backbone, images[:256], CPU, 256)  # warm-up
    seconds = min(timed(embed_pixels, backbone, images, CPU, 256)[0] for _ in range(2))
    done("embed", {"images": n_embed, "image_size": pixels64.shape[1], "s": seconds,
                   "images_per_s": n_embed / seconds if seconds > 0 else None})

    points, labels = clustered(n_points, 768, N_CLASSES)
    clustering_scores(points[:1000], labels[:1000], n_init=10, seed=0)  # warm-up
    seconds, scores = timed(clustering_scores, points, labels, n_init=10, seed=0)
    done("evaluate", {"points": n_points, "s": seconds, "kmeans_acc": scores["kmeans_acc"]})

    p = load_params(ROOT / "params.yaml").umap
    warm_s, _ = timed(project, points[:300], p)  # numba compiles umap's layout kernels
    seconds, _ = timed(project, points, p)
    done("umap", {"points": n_points, "s": seconds, "first_call_jit_s": warm_s})

    small = points[:n_umap_small]
    umap_exact(points[:300], p)  # warm-up of the exact path's kernels
    approx_s, _ = timed(project, small, p)
    exact_s, _ = timed(umap_exact, small, p)
    done("umap_small", {"points": n_umap_small, "approximate_s": approx_s, "exact_s": exact_s})
    return out


# --- 4. evaluate at scale ------------------------------------------------------------------------


def bench_evaluate_sizes(sizes: list[int], figures: Figures | None = None) -> list[dict]:
    """The evaluate stage's metrics at each size, each in a fresh process (its own peak memory).
    Each size is recorded as soon as it is measured; one that fails is recorded as failed."""
    rows: list[dict] = []
    for points in sizes:
        try:
            row = bench_evaluate.run_in_subprocess(points)
        except Exception as exc:  # noqa: BLE001  (the table must still come)
            row = {"points": points, "failed": _first_line(exc)}
        rows.append(row)
        if figures is not None:
            figures.record("evaluate", rows)
        print(f"  evaluate {points} x 768: " + (
            f"failed: {row['failed']}" if "failed" in row else
            f"{number(row.get('total_s'), '.0f')} s, peak {number(row.get('peak_rss_gib'), '.2f')} GiB, the evaluation "
            f"added {number(_added(row), '.2f')} GiB"), flush=True)
    return rows


def _added(row: dict) -> float | None:
    """The memory the evaluation itself added (its peak less what the process held before it)."""
    if "added_gib" in row:
        return row["added_gib"]
    if fault(row.get("peak_rss_gib")) or fault(row.get("rss_before_gib")):
        return None
    return row["peak_rss_gib"] - row["rss_before_gib"]


def evaluate_lines(rows: list[dict]) -> list[tuple[str, str, str, str]]:
    out = []
    for r in rows:
        if "failed" in r:
            out.append((f"evaluate {r['points']} x 768", "-", "failed", r["failed"][:60]))
            continue
        out.append((f"evaluate {r['points']} x {r['dim']}, {r['classes']} classes, whole stage incl. the L2 view "
                    f"(K-means {number(r.get('kmeans_s'), '.0f')} s, "
                    f"search {number(r.get('retrieval_s'), '.0f')} s), s",
                    "-", number(r.get("total_s"), ".1f"),
                    f"peak {number(r.get('peak_rss_gib'), '.2f')} GiB, +{number(_added(r), '.2f')} GiB"))
    measured = [r for r in rows if "failed" not in r]
    if len(measured) >= 2:  # the memory the evaluation itself added (peak less what was there before it)
        own = [{"points": r["points"], "gib": _added(r)} for r in measured]
        a, b = own[-2], own[-1]
        if fault(a["gib"]) or fault(b["gib"]):
            per = "not measured"
        else:
            per = f"+{(b['gib'] - a['gib']) / (b['points'] - a['points']) * 1e5 * 1024:.0f} MiB per 100,000 points"
        out.append((f"  growth {a['points']} -> {b['points']}: time ~ {growth_text(measured, 'total_s')} "
                    f"(K-means ~ {growth_text(measured, 'kmeans_s')}, "
                    f"search ~ {growth_text(measured, 'retrieval_s')}); "
                    f"memory the evaluation adds ~ {growth_text(own, 'gib')}, {per}", "-", "-", "-"))
    return out


# --- the table --------------------------------------------------------------------------------


def number(value: object, spec: str) -> str:
    """`value` formatted, or "missing" / "not a number" (never an exception in the table)."""
    if value is None:
        return "missing"
    if not isinstance(value, (int, float)) or not np.isfinite(value):
        return "not a number"
    return format(value, spec)


def ratio(numerator: object, denominator: object, spec: str = ".1f") -> str:
    """`numerator / denominator` as `11.5x`, or which of the two is zero, negative or missing
    (never divided by)."""
    why = fault(denominator) or fault(numerator)
    if why:
        return f"n/a ({why})"
    return f"{format(numerator / denominator, spec)}x"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Figures:
    """The figures measured so far: each recorded (and written to the JSON file) as soon as it is
    measured, so that what was measured survives a later failure."""

    def __init__(self, path: Path | None, machine: dict) -> None:
        self.path = path
        self.data: dict = {"machine": machine}

    def record(self, key: str, value: object) -> None:
        self.data[key] = value
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
            tmp.replace(self.path)

    def measure(self, key: str, fn, *args, **kwargs) -> dict:
        """`fn(*args, **kwargs)` recorded under `key`, or `{"failed": "<error>"}` if it raised."""
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (the table must still come)
            so_far = self.data.get(key)  # what a part recorded before it failed stays
            value = {**(so_far if isinstance(so_far, dict) else {}), "failed": _first_line(exc)}
            print(f"  {key} failed: {value['failed']}", flush=True)
        self.record(key, value)
        return value


def _failed_row(what: str, section: dict) -> tuple[str, str, str, str]:
    return (what, "-", "failed", section["failed"][:60])


def table(m: dict, data: dict, train: dict, later: dict, evaluated: list[dict] | None = None) -> str:
    g = dict.get
    rows = [("measurement", "study's way (baseline)", "ours", "ratio")]
    if "failed" in data:
        rows.append(_failed_row("data path", data))
    else:
        study_ips = g(data, "study_images_per_s")
        rows += [
            (f"data path, triplet epoch at 224px ({g(data, 'images_per_epoch')} images), images/s",
             number(study_ips, ".0f"), number(g(data, "ours_images_per_s"), ".0f"),
             ratio(g(data, "ours_images_per_s"), study_ips)),
            ("  ours, host side only (gather + to_device; normalise runs on the GPU there), images/s",
             number(study_ips, ".0f"), number(g(data, "ours_host_only_images_per_s"), ".0f"),
             ratio(g(data, "ours_host_only_images_per_s"), study_ips, ".0f")),
            (f"  one-time decode into the cache ({g(data, 'images_per_epoch', 0) // 3} images), s", "-",
             number(g(data, "decode_once_s"), ".2f"), ""),
        ]
    if "failed" in train and not any(m in train for m in ("classification", "triplet")):
        rows.append(_failed_row("training epoch", train))
    else:
        for method in ("classification", "triplet"):
            r = train.get(method, {"failed": train.get("failed", "missing")})
            what = (f"training epoch, {method} ({g(train, 'train_images')} train + {g(train, 'val_images')} val "
                    f"at {g(train, 'image_size')}px, test_convnext), s")
            if "failed" in r:
                rows.append(_failed_row(what, r))
                continue
            rows.append((what, number(g(r, "study_s"), ".2f"), number(g(r, "ours_s"), ".2f"),
                         ratio(g(r, "study_s"), g(r, "ours_s"))))  # time: the study's over ours
    missing = {"failed": later.get("failed", "missing")}  # a part not measured: why
    e, k, u, s = (later.get(key, missing) for key in ("embed", "evaluate", "umap", "umap_small"))
    rows += [
        _failed_row("embed", e) if "failed" in e else
        (f"embed {g(e, 'images')} images at {g(e, 'image_size')}px (test_convnext), s", "-", number(g(e, "s"), ".2f"),
         f"{number(g(e, 'images_per_s'), '.0f')} img/s"),
        _failed_row("evaluate", k) if "failed" in k else
        (f"evaluate: K-means n_init=10 on {g(k, 'points')} x 768, s", "-", number(g(k, "s"), ".2f"),
         "target < 30 s"),
        _failed_row("umap", u) if "failed" in u else
        (f"umap on {g(u, 'points')} x 768, s (first call compiles: {number(g(u, 'first_call_jit_s'), '.0f')} s)",
         "-", number(g(u, "s"), ".2f"), "target < 30 s"),
        _failed_row("umap, small", s) if "failed" in s else
        (f"umap on {g(s, 'points')} points: umap-learn's own exact path vs ours (scikit-learn kNN), s",
         number(g(s, "exact_s"), ".2f"), number(g(s, "approximate_s"), ".2f"),
         ratio(g(s, "exact_s"), g(s, "approximate_s"))),
    ]
    rows += evaluate_lines(evaluated or [])
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    load = m.get("load_average") or []
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Python {m['python']}, {m['huge_pages']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in load)}",
    ]
    for i, r in enumerate(rows):
        lines.append(" | ".join(c.ljust(width[j]) if j == 0 else c.rjust(width[j]) for j, c in enumerate(r)))
        if i == 0:
            lines.append("-+-".join("-" * w for w in width))
    return "\n".join(lines)


def _say(section: dict, text) -> None:
    """Print a section's figures as soon as they are measured (`text(section)`), or that it failed."""
    if "failed" not in section:
        try:
            print("  " + text(section), flush=True)
        except Exception as exc:  # noqa: BLE001  (a figure that cannot be printed is not a reason to stop)
            print(f"  (figures not printable: {_first_line(exc)})", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="generated 500x375 JPEGs (default 300)")
    parser.add_argument("--epochs", type=int, default=3, help="timed data-path epochs after the warm-up one")
    parser.add_argument("--points", type=int, default=10_000, help="embeddings for K-means and UMAP")
    parser.add_argument("--umap-small", type=int, default=3_000, help="points for the exact-vs-approximate UMAP")
    parser.add_argument("--embed", type=int, default=2_000, help="images for the embed timing")
    parser.add_argument("--repeats", type=int, default=4, help="timed training epochs per way and method")
    parser.add_argument("--evaluate-points", default="10000,30000,100000",
                        help="sizes for the evaluate rows, comma-separated ('' for none)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file, each as it is measured")
    args = parser.parse_args(argv)

    m = machine()
    figures = Figures(args.json, m)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_cpu_") as tmp:
        work = Path(tmp)
        paths = study.random_rgb_jpegs(work / "jpegs", args.images)
        labels = np.arange(len(paths)) % N_CLASSES
        print(f"generated {len(paths)} JPEGs 500x375 ({time.perf_counter() - start:.0f} s); "
              "measuring the data path ...", flush=True)
        data = figures.measure("data_path", bench_data_path, paths, labels, work, args.epochs)
        _say(data, lambda d: f"data path: study's way {d['study_images_per_s']:.0f} images/s, ours "
                             f"{d['ours_images_per_s']:.0f} ({ratio(d['ours_images_per_s'], d['study_images_per_s'])})")
        print(f"measuring one training epoch per method ({time.perf_counter() - start:.0f} s) ...", flush=True)
        train = figures.measure("training", bench_training, paths, labels, work, size=64,
                                n_val=max(N_CLASSES * 2, len(paths) // 5), repeats=args.repeats)
        for method in ("classification", "triplet"):
            _say(train, lambda t, m=method: f"training epoch, {m}: study's way {t[m]['study_s']:.2f} s, ours "
                                            f"{t[m]['ours_s']:.2f} s")
        print(f"measuring embed, evaluate and umap ({time.perf_counter() - start:.0f} s) ...", flush=True)
        later = figures.measure("stages", bench_stages, work / "decoded64.npy", args.embed, args.points,
                                args.umap_small, figures)
    sizes = [int(x) for x in args.evaluate_points.split(",") if x.strip()]
    print(f"measuring evaluate at {sizes} points ({time.perf_counter() - start:.0f} s) ...", flush=True)
    evaluated = bench_evaluate_sizes(sizes, figures)
    total = time.perf_counter() - start
    figures.record("total_s", total)
    print()
    print(table(m, data, train, later, evaluated))
    print(f"whole benchmark: {total:.0f} s")
    print(f"data path speed-up: {ratio(data.get('ours_images_per_s'), data.get('study_images_per_s'))}")


if __name__ == "__main__":
    main()
