"""split@D: train/val/test tables, from the study's own lists or generated from `seed`.

Writes `train.csv`, `val.csv`, `test.csv` (row, path, label, class, group), `classes.json`,
`pool.csv` (every downloaded image: what `triplet.pool: study` draws from) and `checks.json`
(leak counts of the tables: `stages.lib.leaks`). `row` indexes the decoded image array, which
follows the manifest's order. With `split.source: annotations` the tables are the study's lists
(its `low_data_` lists when `shots: 15`; `test.csv` in its list's order, which the study's
scoring depends on), and `triplet_train.csv` / `triplet_val.csv` (plus `negative_label`) are its
triplet lists; with `generated` they are stratified, grouped splits and the k-shot subset, from
`seed` (a CSV source's own `split` column, when it has one, replaces the generated split).

With `split.classes: unseen` the classes are halved (`stages.lib.splits.class_halves`): train and
val hold images of the training half only (generated: `unseen_splits`; the study's lists or a CSV's
own split: their train and val images of those classes, without the study's triplet lists, whose
negatives name every class), test every image of the other half; `protocol.json` records the
halves. Under `seen` (the default) no `protocol.json` is written and nothing else changes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from stages.lib import cli
from stages.lib.errors import PipelineError, stage_main

if TYPE_CHECKING:
    import pandas as pd

    from stages.lib.datasets import DatasetSpec
    from stages.lib.params import Params

log = logging.getLogger("stages.split")


def generated_tables(
    manifest: pd.DataFrame, params: Params, spec: DatasetSpec, dataset: str, train_classes: list[str] | None = None,
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The generated split (`split.source: generated`): stratified, grouped tables from `seed` (or,
    for a CSV source with a `split` column, the user's own split as given), the k-shot subset of
    train, each row with its manifest `row` (the index of its decoded image). `train_classes`: the
    training half of `split.classes: unseen` (None: seen)."""
    from stages.lib.splits import (
        COLUMNS,
        SPLITS,
        SplitTables,
        build_splits,
        few_shot,
        given_splits,
        keep_halves,
        unseen_splits,
    )

    per_class = params.split.test_per_class
    if per_class == "study":
        per_class = spec.study_test_per_class  # None: the study did not use it, test_fraction applies
    try:
        if "split" in manifest.columns:  # a CSV source's own split column, used as given
            generated = given_splits(manifest)
            if train_classes is not None:
                label = {name: i for i, name in enumerate(generated.classes)}
                everything = manifest.assign(label=manifest["class"].map(label))[COLUMNS]
                generated = SplitTables(*keep_halves(generated.train, generated.val, everything, train_classes),
                                        generated.classes)
        elif train_classes is not None:
            generated = unseen_splits(manifest, val_fraction=params.split.val_fraction, seed=params.seed,
                                      train_classes=train_classes)
        else:
            generated = build_splits(
                manifest, test_fraction=params.split.test_fraction, val_fraction=params.split.val_fraction,
                seed=params.seed, test_per_class=per_class,
            )
        train = few_shot(generated.train, params.shots, params.seed, dataset)
    except PipelineError as exc:
        if spec.origin is None:
            raise
        raise PipelineError(f"{spec.origin}: {exc}") from None  # your own dataset: name its folder or CSV
    columns = ["row", "path", "label", "class", "group"]
    tables = {}
    for name, table in zip(SPLITS, (train, generated.val, generated.test), strict=True):
        table = table.merge(manifest[["path", "row"]], on="path", how="left", validate="one_to_one")
        tables[name] = table.sort_values("row")[columns]
    return tables, generated.classes


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("split", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name (its registry entry names the study's list prefix)")
    p.add_argument("--raw", type=Path, required=True, help="downloaded dataset folder (data/raw/<dataset>)")
    p.add_argument("--annotations", type=Path, help="the study's lists (data/raw/annotations), if split.source is so")
    p.add_argument("--out", type=Path, required=True, help="output folder (data/splits/<dataset>)")
    args = p.parse_args(argv)
    # imported only now, so that `--help` answers at once
    from stages.lib.annotations import study_splits
    from stages.lib.atomic import atomic_dir
    from stages.lib.datasets import dataset_spec
    from stages.lib.manifest import read_manifest
    from stages.lib.splits import PROTOCOL_FILE, class_halves, keep_halves, protocol_record

    params = cli.params_of(args)
    manifest = read_manifest(args.raw).reset_index(drop=True)
    manifest["row"] = manifest.index
    if manifest["class"].nunique() < 2:
        raise PipelineError(f"{args.raw}: {args.dataset} has fewer than 2 classes; nothing to compare")
    spec = dataset_spec(args.dataset, params.sources, args.params.resolve().parent)
    protocol = None
    if params.split.classes == "unseen":
        try:
            halves = class_halves(list(manifest["class"].unique()), params.seed, spec.unseen_first_half)
        except PipelineError as exc:
            raise PipelineError(f"{spec.origin or args.dataset}: {exc}") from None
        protocol = protocol_record(*halves, params.seed, spec.unseen_first_half)
    train_classes = protocol["train_classes"] if protocol else None
    if params.split.source == "annotations":
        if spec.annotation_prefix is None:
            raise PipelineError(f"the study published no split lists for {args.dataset}; set split.source: generated")
        if args.annotations is None:
            raise PipelineError(
                "split.source is annotations but no --annotations folder was given (dvc.yaml passes "
                "data/raw/annotations); pass it, or set split.source: generated"
            )
        study = study_splits(manifest, args.annotations, spec.annotation_prefix, params.shots,
                             str(args.raw / "manifest.csv"))
        for warning in study.warnings:
            log.warning("%s", warning)
        tables, classes = study.tables, study.classes
    else:
        tables, classes = generated_tables(manifest, params, spec, args.dataset, train_classes)
    label = {name: i for i, name in enumerate(classes)}
    pool = manifest.assign(label=manifest["class"].map(label))[["row", "path", "label", "class", "group"]]
    if protocol and params.split.source == "annotations":  # the study's train and val lists, its test classes
        tables = dict(zip(("train", "val", "test"), keep_halves(tables["train"], tables["val"], pool, train_classes),
                          strict=True))
    checks = list_checks(tables)
    with atomic_dir(args.out) as tmp:
        for name, table in tables.items():
            table.to_csv(tmp / f"{name}.csv", index=False, lineterminator="\n")
        pool.to_csv(tmp / "pool.csv", index=False, lineterminator="\n")
        (tmp / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
        (tmp / "checks.json").write_text(json.dumps(checks, indent=2, sort_keys=True) + "\n")
        if protocol:
            (tmp / PROTOCOL_FILE).write_text(json.dumps(protocol, indent=2) + "\n")
    log.info(
        "%s: %d train / %d val / %d test images, %d classes (split.source=%s, shots=%d)",
        args.dataset, len(tables["train"]), len(tables["val"]), len(tables["test"]), len(classes),
        params.split.source, params.shots,
    )
    if protocol:
        log.info("unseen classes: train and val on %d (%s), test on the other %d (%s)",
                 len(protocol["train_classes"]), ", ".join(protocol["train_classes"]),
                 len(protocol["test_classes"]), ", ".join(protocol["test_classes"]))

    for view, counts in checks.items():
        log.info("%s: %s", view, ", ".join(f"{k} {v}" for k, v in counts.items()))


def list_checks(tables: dict) -> dict[str, dict[str, int]]:
    """Leak counts of the classification tables and, where the split has them, of the study's
    triplet lists (against its train list), with how many anchors those lists repeat."""
    from stages.lib.leaks import run_leak

    checks = {"classification": run_leak(tables["train"], tables["val"], tables["test"])}
    if "triplet_train" in tables:
        checks["triplet"] = {
            **run_leak(tables["triplet_train"], tables["triplet_val"], tables["test"], listed_train=tables["train"]),
            "repeated_anchors_train": int(tables["triplet_train"]["row"].duplicated().sum()),
            "repeated_anchors_val": int(tables["triplet_val"]["row"].duplicated().sum()),
        }
    return checks


if __name__ == "__main__":
    main()
