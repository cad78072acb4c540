"""Paired comparison of two runs of one method on the same test images, e.g. two experiments.

`report` compares methods within one run of the pipeline; this compares one method across two
(`triplet.pool: study` against `split`, two learning rates, ...). Each argument is a folder of
`evaluate`'s per-image predictions, `data/predictions/<dataset>/<method>/` (one `seed<S>.csv` per
training seed), copied out of the workspace of each experiment:

    dvc exp apply A && cp -r data/predictions/digits/triplet /tmp/A
    dvc exp apply B && cp -r data/predictions/digits/triplet /tmp/B
    python scripts/compare_runs.py /tmp/B /tmp/A     # B minus A

It prints K-means accuracy of each and the difference, as `report` computes its verdicts: with two
or more seeds, a t-interval over the per-seed paired differences (S - 1 degrees of freedom:
`stats.seed_interval`, a statement about the two settings); with one seed, the paired bootstrap
over test images (a statement about two trained models only). Per seed, each difference with its
image-level interval. Seeds are paired by number; both folders must hold the same seeds, scored on
the same test rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.lib.stats import accuracy_ci, paired_difference, seed_interval  # noqa: E402


class CompareError(Exception):
    """A problem with the inputs, printed as one line."""


def read_runs(folder: Path, column: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """seed -> (test rows, per-image 0/1) of every `seed<S>.csv` in `folder`."""
    import pandas as pd

    if not folder.is_dir():
        raise CompareError(f"{folder}: no such folder; give a data/predictions/<dataset>/<method> folder")
    runs = {}
    for path in sorted(folder.glob("seed*.csv")):
        table = pd.read_csv(path)
        if not {"row", column} <= set(table.columns):
            raise CompareError(f"{path}: needs columns row and {column}; is it a predictions file of `evaluate`?")
        runs[int(path.stem.removeprefix("seed"))] = (table["row"].to_numpy(), table[column].to_numpy(dtype=float))
    if not runs:
        raise CompareError(f"{folder}: no seed<S>.csv files; give a data/predictions/<dataset>/<method> folder")
    return runs


def compare(b_folder: Path, a_folder: Path, *, l2: bool = False, resamples: int = 10000, seed: int = 0) -> dict:
    """Accuracy of B minus accuracy of A, pooled over seeds and per seed."""
    column = "correct_l2" if l2 else "correct"
    a, b = read_runs(a_folder, column), read_runs(b_folder, column)
    if sorted(a) != sorted(b):
        raise CompareError(f"the two folders hold other seeds ({sorted(b)} and {sorted(a)}); compare the same seeds")
    for s in a:
        if not np.array_equal(a[s][0], b[s][0]):
            raise CompareError(f"seed {s} was scored on other test images in the two folders; the runs must share "
                               "their split (same dataset, seed, split params)")
    seeds = sorted(a)
    ya, yb = np.stack([a[s][1] for s in seeds]), np.stack([b[s][1] for s in seeds])
    per_seed = {s: paired_difference(yb[i], ya[i], resamples=resamples, seed=seed) for i, s in enumerate(seeds)}
    return {
        "seeds": seeds,
        "n_test": int(ya.shape[1]),
        "b": {"kmeans_acc": float(yb.mean()), "ci95": accuracy_ci(yb, resamples=resamples, seed=seed)},
        "a": {"kmeans_acc": float(ya.mean()), "ci95": accuracy_ci(ya, resamples=resamples, seed=seed)},
        "difference": per_seed[seeds[0]] if len(seeds) == 1
        else seed_interval([d["difference"] for d in per_seed.values()]),
        "per_seed": per_seed,
    }


def _pts(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{d['difference'] * 100:+.1f} points [{lo * 100:+.1f}, {hi * 100:+.1f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("b", type=Path, help="predictions folder of run B (the difference is B minus A)")
    p.add_argument("a", type=Path, help="predictions folder of run A")
    p.add_argument("--l2", action="store_true", help="K-means on L2-normalised embeddings (correct_l2)")
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = p.parse_args(argv)
    try:
        r = compare(args.b, args.a, l2=args.l2, resamples=args.resamples, seed=args.seed)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, folder in (("b", args.b), ("a", args.a)):
        lo, hi = r[name]["ci95"]
        print(f"{name.upper()} {folder}: K-means accuracy {r[name]['kmeans_acc']:.1%} [{lo:.1%}, {hi:.1%}]")
    verdict = {1: "B better", -1: "A better", 0: "no difference shown (95% CI includes 0)"}[r["difference"]["sign"]]
    how = ("t-interval over the per-seed differences" if len(r["seeds"]) > 1
           else "one seed: two trained models, not the two settings")
    print(f"B - A: {_pts(r['difference'])}, {r['n_test']} test images x {len(r['seeds'])} seed(s), {how}: {verdict}")
    print("per seed: " + "; ".join(f"seed {s} {_pts(d)}" for s, d in r["per_seed"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
