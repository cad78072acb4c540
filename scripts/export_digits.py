"""Write scikit-learn's digits as image files: a folder of class folders and a CSV of paths and labels.

An example of "your own data" that needs no download (README, "Your own data"):

    python scripts/export_digits.py OUT [--per-class N]

writes `OUT/images/<digit>/<digit>_<index>.png` (64x64 grayscale PNGs, the first N of each digit)
and `OUT/labels.csv` with columns path (relative to `OUT/images`), label and split (every fifth
image of a digit test, every tenth val, the rest train: a split of your own, used as given).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image


def split_of(index: int) -> str:
    """The example's own split: index within the class 0, 5, 10, ... test; 1, 11, ... val; else train."""
    return "test" if index % 5 == 0 else "val" if index % 10 == 1 else "train"


def export(out: Path, per_class: int | None = None, size: int = 64) -> int:
    """Write the images and `labels.csv` under `out`; return how many images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    rows, seen = [], {}
    for index, (image, target) in enumerate(zip(pixels, digits.target, strict=True)):
        label = str(int(target))
        k = seen.get(label, 0)
        if per_class is not None and k >= per_class:
            continue
        seen[label] = k + 1
        rel = f"{label}/{label}_{index:04d}.png"
        path = out / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").resize((size, size), Image.Resampling.BILINEAR).save(path)
        rows.append((rel, label, split_of(k)))
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write images/ and labels.csv into")
    p.add_argument("--per-class", type=int, default=None, help="images per digit (default: all, 174 to 183)")
    args = p.parse_args(argv)
    if args.per_class is not None and args.per_class < 3:
        p.error("--per-class must be at least 3 (one image each for train, val and test)")
    count = export(args.out, args.per_class)
    print(f"wrote {count} images to {args.out / 'images'} and {args.out / 'labels.csv'}")


if __name__ == "__main__":
    main()
