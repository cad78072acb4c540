"""split@D: stratified, grouped train/val/test tables (and the k-shot train subset) from `seed`.

Writes `train.csv`, `val.csv`, `test.csv` (row, path, label, class, group) and `classes.json`.
`row` indexes the decoded image array, which follows the manifest's order.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import atomic_dir
from stages.lib.errors import PipelineError, stage_main
from stages.lib.manifest import read_manifest
from stages.lib.splits import SPLITS, build_splits, few_shot

log = logging.getLogger("stages.split")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("split", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name (for messages)")
    p.add_argument("--raw", type=Path, required=True, help="downloaded dataset folder (data/raw/<dataset>)")
    p.add_argument("--out", type=Path, required=True, help="output folder (data/splits/<dataset>)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    manifest = read_manifest(args.raw).reset_index(drop=True)
    manifest["row"] = manifest.index
    if manifest["class"].nunique() < 2:
        raise PipelineError(f"{args.raw}: {args.dataset} has fewer than 2 classes; nothing to compare")
    tables = build_splits(
        manifest, test_fraction=params.split.test_fraction, val_fraction=params.split.val_fraction, seed=params.seed
    )
    train = few_shot(tables.train, params.shots, params.seed, args.dataset)
    columns = ["row", "path", "label", "class", "group"]
    with atomic_dir(args.out) as tmp:
        for name, table in zip(SPLITS, (train, tables.val, tables.test), strict=True):
            table = table.merge(manifest[["path", "row"]], on="path", how="left", validate="one_to_one")
            table.sort_values("row")[columns].to_csv(tmp / f"{name}.csv", index=False, lineterminator="\n")
        (tmp / "classes.json").write_text(json.dumps(tables.classes, indent=2) + "\n")
    log.info(
        "%s: %d train / %d val / %d test images, %d classes (shots=%d)",
        args.dataset, len(train), len(tables.val), len(tables.test), len(tables.classes), params.shots,
    )


if __name__ == "__main__":
    main()
