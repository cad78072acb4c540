"""What a method trains on and keeps its epoch by, read from a split: the training and validation
tables (the study's lists where the split has them, renumbered under unseen classes), their
decoded pixels, the run's leak counts, the validation scorer of `train.select` and the run's
budget. The train and tune stages both use it, so that a search trains on exactly what training
does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stages.lib.errors import PipelineError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from stages.lib.methods import Method
    from stages.lib.trainer import SplitData


def validation_scorer(params, splits: Path, decoded: Path, device: torch.device, metric: str | None = None):
    """The `stages.lib.validation.Scorer` of `metric` (default: `train.select` when it names one, else
    None) on the split's validation images (`val.csv`: the same images for every method, never a
    method's own lists or pool, and never the test images)."""
    from stages.lib.splitdata import read_table, split_pixels
    from stages.lib.validation import METRICS, Scorer

    metric = metric or (params.train.select if params.train.select in METRICS else None)
    if metric is None:
        return None
    table = read_table(splits, "val")
    return Scorer(metric, split_pixels(decoded, table, params.model.image_size), table["label"].to_numpy(), device,
                  batch_size=params.embed.batch_size, precision=params.train.precision)


def run_budget(params, dataset: str, train_params, splits: Path):
    """The run's `Budget` under `train.budget` steps or images (None under epochs): `train.budget_amount`,
    or what the classification run of this dataset and shots uses at its settings on the split's
    training images; its schedule counts `train_params.epochs` epochs of the amount."""
    from stages.lib.budget import Budget, reference_amount
    from stages.lib.runs import settings_for
    from stages.lib.splitdata import read_table

    kind = params.train.budget
    if kind == "epochs":
        return None
    amount = params.train.budget_amount
    if amount is None:
        if "classification" not in params.method:
            raise PipelineError(
                f"train.budget: {kind} with budget_amount null takes its amount from the classification run, but "
                "params.yaml has no classification section; add one or set train.budget_amount"
            )
        ref_train, ref_method = settings_for(params, dataset, "classification")
        amount = reference_amount(kind, ref_train.epochs, ref_method.batch_size, len(read_table(splits, "train")))
    return Budget(kind, amount, train_params.epochs)


def training_data(
    method: Method, splits: Path, decoded: Path, size: int
) -> tuple[dict[str, SplitData], dict[str, int]]:
    """What `fit` trains on and picks its epoch with (`train` and `val`: `training_tables` decoded by
    `decoded_splits`), and the run's leak counts against the split's test table."""
    from stages.lib.leaks import run_leak
    from stages.lib.splitdata import read_table

    tables, pool, listed_train = training_tables(splits, method)
    leak = run_leak(tables["train"], tables["val"], read_table(splits, "test"), pool=pool, listed_train=listed_train)
    return decoded_splits(decoded, tables, pool, size), leak


def training_tables(
    splits: Path, method: Method
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame | None, pd.DataFrame | None]:
    """The `train` and `val` tables the method uses (the study's triplet lists where the split has
    them), the sampling pool (every downloaded image) when the method draws from it, and, when the
    study's triplet list stands in for `train`, the split's own train list to check it against.
    Under `split.classes: unseen` the tables' labels are renumbered over the training classes
    (`training_labels`), and the study's pool is refused."""
    from stages.lib.splitdata import read_classes, read_protocol, read_table, training_labels

    tables, listed_train = {}, None
    for name in ("train", "val"):
        study = method.study_tables.get(name)
        if study and (splits / f"{study}.csv").is_file():
            tables[name] = read_table(splits, study)
            if name == "train":
                listed_train = read_table(splits, "train")
        else:
            tables[name] = read_table(splits, name)
    pool = read_table(splits, "pool") if method.pool == "study" else None
    protocol = read_protocol(splits)
    if protocol:
        if pool is not None:
            raise PipelineError(
                f"{splits} is a split.classes: unseen split, and triplet.pool: study would draw its test classes into "
                "training; set triplet.pool: split"
            )
        classes = read_classes(splits)
        tables = {name: training_labels(table, classes, protocol["train_classes"], f"{splits}/{name}.csv")
                  for name, table in tables.items()}
    return tables, pool, listed_train


def decoded_splits(
    decoded: Path, tables: dict[str, pd.DataFrame], pool: pd.DataFrame | None, size: int
) -> dict[str, SplitData]:
    """The decoded training and validation data. Without a pool, each table's own pixels (rows in
    table order, `images` their manifest rows); with one, the training data is the pool's pixels and
    the `train` table's images as `anchors` into it, and the validation data is still the `val`
    table's own: its triplets are drawn from the validation images only, never from the pool's test
    images, under any `triplet.pool`."""
    import numpy as np

    from stages.lib.splitdata import split_pixels
    from stages.lib.trainer import SplitData

    def own(table: pd.DataFrame) -> SplitData:
        return SplitData(split_pixels(decoded, table, size), table["label"].to_numpy(), _negatives(table),
                         images=table["row"].to_numpy())

    if pool is None:
        return {name: own(table) for name, table in tables.items()}
    if not np.array_equal(pool["row"].to_numpy(), np.arange(len(pool))):
        raise PipelineError("pool.csv does not list the download in manifest order; re-run the split stage")
    pixels, labels = split_pixels(decoded, pool, size), pool["label"].to_numpy()
    train = tables["train"]
    anchors = train["row"].to_numpy()
    if not np.array_equal(labels[anchors], train["label"].to_numpy()):
        raise PipelineError("train and pool.csv disagree on labels; re-run the split stage")
    return {name: SplitData(pixels, labels, _negatives(train), anchors=anchors) if name == "train" else own(table)
            for name, table in tables.items()}


def _negatives(table: pd.DataFrame) -> np.ndarray | None:
    return table["negative_label"].to_numpy() if "negative_label" in table.columns else None
