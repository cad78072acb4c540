"""The evaluate stage's metrics on large generated test sets: seconds and peak memory.

`N` x 768 float32 embeddings in 100 classes (Gaussian blobs that K-means separates to an accuracy
of about 0.8 in about 15 iterations per initialisation, as with real embeddings), scored by what
the evaluate stage runs, `evaluate_embeddings` at the params' defaults: K-means with 10
initialisations, the 5 single-initialisation K-means runs of `kmeans_init_std`, the bootstrap
interval, the exact leave-one-out retrieval, and the same on the L2-normalised embeddings (K-means
with 10 initialisations again; the retrieval of both views comes from one search).

Run one size per process, so that the peak resident memory is this size's alone:

    python -m benchmarks.bench_evaluate --points 100000            # a JSON line on stdout
    python -m benchmarks.bench_evaluate --points 100000 --device cuda

`make bench` (bench_cpu.py) runs it for 10,000, 30,000 and 100,000 points; `benchmarks/gpu.sh`
for 100,000 and 1,000,000 on the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import stages  # noqa: E402,F401  (process options first)

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402

from stages.lib import metrics  # noqa: E402

DIM, CLASSES = 768, 100


def blobs(n: int, dim: int = DIM, n_classes: int = CLASSES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` float32 points in `n_classes` Gaussian blobs (centres N(0, 0.2^2), noise N(0, 0.6^2) per axis)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 0.2, (n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    points = rng.standard_normal((n, dim), dtype=np.float32)
    points *= np.float32(0.6)
    points += centres[labels]
    return points, labels


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _status_kib(field: str) -> int | None:
    """A `VmRSS`/`VmHWM` line of /proc/self/status in KiB, or None where there is none (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak() -> bool:
    """Start the peak resident memory again from what the process holds now (Linux: `5` into
    /proc/self/clear_refs resets VmHWM), so that a later peak is what came after, not the memory
    generating the inputs took and gave back. False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    now, peak = _status_kib("VmRSS"), _status_kib("VmHWM")
    return now is not None and peak is not None and peak <= now + 1024  # the reset took (within 1 MiB)


def rss_gib() -> float | None:
    """Resident memory now, or None where /proc/self/status is not there."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 2**20


def since_reset_peak_gib() -> float | None:
    """The peak resident memory since `reset_peak` (VmHWM), or None where it cannot be read."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 2**20


def fault(value: object) -> str:
    """Why `value` cannot be divided by or taken the log of: "missing", "not a number", "zero",
    "negative"; "" when it is a positive number."""
    if value is None:
        return "missing"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
        return "not a number"
    if value == 0:
        return "zero"
    return "negative" if value < 0 else ""


def evaluate(x: np.ndarray, y: np.ndarray, device: torch.device | None = None) -> dict:
    """Time the evaluate stage's metrics at `params.yaml`'s evaluate settings (10 initialisations,
    seed 0, 5 repeats, k = 5, euclidean, 10,000 bootstrap resamples), the search on `device`.
    `retrieval_s`: the part spent in the neighbour search (both views); the rest is K-means."""
    out: dict = {"points": len(x), "dim": x.shape[1], "classes": int(len(np.unique(y)))}
    spent: list[float] = []
    search = metrics.retrieval_by_distance

    def timed_search(*args, **kwargs):
        start = time.perf_counter()
        try:
            return search(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    metrics.retrieval_by_distance = timed_search
    try:
        start = time.perf_counter()
        scores, _ = metrics.evaluate_embeddings(x, y, n_init=10, seed=0, kmeans_repeats=5, knn_k=5,
                                                bootstrap_resamples=10_000, device=device)
        out["total_s"] = time.perf_counter() - start
    finally:
        metrics.retrieval_by_distance = search
    out["retrieval_s"] = sum(spent)
    out["kmeans_s"] = out["total_s"] - out["retrieval_s"]
    out["kmeans_acc"] = scores["kmeans_acc"]
    out["kmeans_acc_l2"] = scores["l2"]["kmeans_acc"]
    out["precision_at_1"] = scores["precision_at_1"]
    return out


def run_in_subprocess(points: int, device: str = "cpu", timeout: float = 3600) -> dict:
    """`evaluate` on `points` generated points in a fresh Python process (its own peak memory)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_evaluate", "--points", str(points), "--device", device],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench_evaluate --points {points} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def growth(rows: list[dict], key: str) -> float:
    """The exponent b of key ~ points^b between the two largest sizes; NaN (never a division) when
    either value is zero, negative or missing: `growth_text` says which."""
    if len(rows) < 2 or any(fault(r.get(key)) or fault(r.get("points")) for r in rows[-2:]):
        return float("nan")
    a, b = rows[-2], rows[-1]
    if a["points"] == b["points"]:
        return float("nan")
    return float(np.log(b[key] / a[key]) / np.log(b["points"] / a["points"]))


def growth_text(rows: list[dict], key: str) -> str:
    """`N^1.43`, or what made it unmeasurable: `not measured (zero at 30000 points)`."""
    for r in rows[-2:]:
        if fault(r.get(key)):
            return f"not measured ({fault(r.get(key))} at {r.get('points')} points)"
    b = growth(rows, key)
    return f"N^{b:.2f}" if np.isfinite(b) else "not measured (fewer than two sizes)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, required=True)
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the retrieval runs")
    args = parser.parse_args(argv)
    x, y = blobs(args.points, args.dim)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # What the evaluation adds is its peak less what the process held before it. Generating the
    # points took a temporary copy and gave it back, which a peak since the start would count (at
    # 30,000 points that temporary outweighed the evaluation, and the difference read 0): the peak
    # starts again here, where the kernel allows it.
    reset = reset_peak()
    baseline = rss_gib() if reset else peak_rss_gib()
    out = evaluate(x, y, device)
    out["peak_rss_gib"] = (since_reset_peak_gib() if reset else None) or peak_rss_gib()
    out["rss_before_gib"] = baseline  # the interpreter, torch and the generated points
    out["added_gib"] = out["peak_rss_gib"] - baseline
    out["peak_since"] = "the evaluation's start" if reset else "the process's start (peak reset not available)"
    if device.type == "cuda":
        out["gpu_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    out["threads"] = torch.get_num_threads()
    out["load_average"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
