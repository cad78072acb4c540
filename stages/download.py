"""download@D: fetch a dataset into `data/raw/D/` (images one folder per class + manifest.csv).

A dataset of your own (a folder or a CSV in `sources.D`) is checked and copied in; `source@D`
links it where DVC watches it. The only stage family allowed to use the network. The output
folder appears whole or not at all; downloaded archives are kept in a cache folder so an
interrupted download resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.datasets import DATASETS, DatasetSpec, dataset_spec
from stages.lib.errors import stage_main

log = logging.getLogger("stages.download")


def check_counts(spec: DatasetSpec, counts: dict[str, int]) -> list[str]:
    """Warnings where the download differs from the dataset's documented class and image counts."""
    found_total = sum(counts.values())
    warnings = []
    if spec.expected_classes is not None and len(counts) != spec.expected_classes:
        warnings.append(f"{spec.name}: found {len(counts)} classes, expected {spec.expected_classes}")
    if spec.expected_total is not None and found_total != spec.expected_total:
        warnings.append(f"{spec.name}: found {found_total} images, expected {spec.expected_total}")
    for name, expected in (spec.expected_per_class or {}).items():
        if counts.get(name, 0) != expected:
            warnings.append(f"{spec.name}: class {name} has {counts.get(name, 0)} images, expected {expected}")
    return warnings


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("download", __doc__.splitlines()[0])
    p.add_argument("dataset", help=f"one of: {', '.join(DATASETS.names())}, or yours (sources.<name>: folder or csv)")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. data/raw/<dataset>")
    p.add_argument("--cache", type=Path, required=True, help="folder kept between runs for archives")
    args = p.parse_args(argv)
    # imported only now, so that `--help` answers at once
    from stages.lib.atomic import atomic_dir
    from stages.lib.manifest import IMAGES, MANIFEST, scan

    params = cli.params_of(args)
    spec = dataset_spec(args.dataset, params.sources, args.params.resolve().parent)
    source = params.source(args.dataset)
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_dir(args.out) as tmp:
        (tmp / IMAGES).mkdir()
        given = spec.fetch(source, tmp / IMAGES, cache)
        manifest = scan(tmp, spec.group_of)
        for column, values in (given or {}).items():  # e.g. a CSV's groups and split
            manifest[column] = manifest["path"].map(values)
            if manifest[column].isna().any():
                raise RuntimeError(f"{args.dataset}: fetch gave no {column} for some of its images")
        manifest.to_csv(tmp / MANIFEST, index=False, lineterminator="\n")
    counts = manifest.groupby("class").size().to_dict()
    for warning in check_counts(spec, counts):
        log.warning("%s", warning)
    log.info("%s: %d images in %d classes -> %s", args.dataset, len(manifest), len(counts), args.out)


if __name__ == "__main__":
    main()
