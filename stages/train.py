"""train@D-M-S: fine-tune the backbone with method M and training seed S on dataset D's training split.

Trains with `train` and the `M` section as `runs` sets them for D, M and `shots` (stages/lib/runs.py),
for `train.epochs` or, under `train.budget` steps or images, the run's budget (stages/lib/budget.py).
Keeps the epoch `train.select` chooses (the lowest validation loss by default; or the last; or the
best validation embedding metric, scored on the split's validation images the same way for every
method) and writes it to `models/D/M/seedS/` (`model.safetensors`, `meta.json`, with the run's leak
counts, its selection rule and, under a budget, the steps and images it used); per-epoch losses (and
the selected epoch) go to a CSV that the report draws. With `train.processes: N > 1` the stage runs
itself as N processes under torchrun (DistributedDataParallel, `stages.lib.distributed`); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stages.lib import cli
from stages.lib.errors import PipelineError, stage_main

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from stages.lib.methods import Method
    from stages.lib.trainer import SplitData

log = logging.getLogger("stages.train")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("train", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name")
    p.add_argument("method", help="method name (one of params.yaml `methods`)")
    p.add_argument("--seed", type=int, required=True, help="training seed (one of params.yaml `seeds`)")
    p.add_argument("--splits", type=Path, required=True, help="split tables (data/splits/<dataset>)")
    p.add_argument("--decoded", type=Path, required=True, help="decoded images (data/decoded/<dataset>.npy)")
    p.add_argument("--weights", type=Path, required=True, help="pretrained weights folder (models/pretrained)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder (models/<dataset>/<method>/seed<S>)")
    p.add_argument("--curve", type=Path, required=True, help="per-epoch loss CSV (plots/train/...)")
    p.add_argument(
        "--tuned", type=Path, default=None,
        help="the tune stage's values to train with (data/tuned/<dataset>/<method>.json); default: params.yaml's",
    )
    p.add_argument(
        "--resume-dir", type=Path, default=None,
        help="folder for the per-epoch resume checkpoint, kept between runs (data/cache/resume/...); "
        "default: no resuming",
    )
    args = p.parse_args(argv)
    # imported only now, so that `--help` answers at once
    from stages.lib import launcher, stopping
    from stages.lib.device import pick_device
    from stages.lib.methods import METHODS

    params = cli.params_of(args)
    if args.tuned is not None:
        params = with_tuned(params, args.method, args.tuned)
    method_cls = METHODS.get(args.method)
    if args.seed not in params.seeds:
        raise PipelineError(f"--seed {args.seed} is not in params.yaml seeds {params.seeds}; run dvc repro")
    processes = params.train.processes
    if processes > 1 and method_cls.trains and not launcher.launched():
        hint, stopped = stopping.launch_lines(args.resume_dir)
        launcher.launch("stages.train", list(sys.argv[1:] if argv is None else argv), processes, hint=hint,
                        stopped=stopped)
        log.info("%d training processes finished -> %s", processes, args.out)
        return
    with stopping.reporting_to_launcher(launcher.launched()):
        if launcher.launched():
            if launcher.launched_size() != processes:
                raise PipelineError(
                    f"torchrun started {launcher.launched_size()} processes but train.processes is {processes}; "
                    f"set train.processes: {launcher.launched_size()} (the whole run's processes)"
                )
            device = pick_device(params.train.device, launcher.local_rank(), launcher.local_size())
            launcher.init(device)
        else:
            device = pick_device(params.train.device)
        try:
            _train(args, params, method_cls, device)
        finally:
            launcher.finish()


def with_tuned(params, method: str, tuned: Path):
    """`params` with the tuned values of `method` (the tune stage's file) in place of the given ones."""
    from stages.lib.tuning import apply_values, read_tuned

    train, section = apply_values(params, method, read_tuned(tuned, params, method))
    return dataclasses.replace(params, train=train, method={**params.method, method: section})


def _train(args, params, method_cls, device: torch.device) -> None:
    """Train on this process (one rank of several, or alone); rank 0 writes the results."""
    import torch

    from stages.lib import distributed
    from stages.lib.budget import budget_record
    from stages.lib.device import configure_determinism, configure_tf32
    from stages.lib.leaks import no_leak
    from stages.lib.losses import training
    from stages.lib.models import build_backbone, embedding_size, save_checkpoint
    from stages.lib.resume import clear_resume, folder_digest
    from stages.lib.runs import settings_for
    from stages.lib.splitdata import read_classes, read_protocol
    from stages.lib.trainer import fit, write_curve
    from stages.weights import weights_file

    classes = read_classes(args.splits)
    protocol = read_protocol(args.splits)  # split.classes: unseen: a head over the training classes only
    torch.manual_seed(args.seed)
    configure_determinism(params.train.deterministic, device)
    configure_tf32(params.train.precision, device)  # precision fp32 (or auto on the CPU): no TF32 on CUDA
    backbone = build_backbone(params.model.name, weights_file(args.weights))
    n_classes = len(protocol["train_classes"]) if protocol else len(classes)
    train_params, method_params = (settings_for(params, args.dataset, args.method) if method_cls.trains
                                   else (params.train, params.method_params(args.method)))
    method = method_cls(method_params, n_classes, embedding_size(backbone))
    meta = {
        "dataset": args.dataset,
        "method": args.method,
        "model": params.model.name,
        "image_size": params.model.image_size,
        "pretrained": params.model.pretrained,
        "classes": classes,
        "seed": args.seed,
    }
    if method.pool is not None:
        meta["triplet_pool"] = method.pool
    if protocol:
        meta["protocol"] = protocol
    if not method.trains:
        if not distributed.is_main():
            return  # rank 0 writes the checkpoint
        write_curve(args.curve, [])
        save_checkpoint(args.out, backbone, None, {**meta, "best_epoch": 0, "epochs": 0, "leak": no_leak()})
        log.info("%s: no training; saved the starting weights to %s", args.method, args.out)
        return
    method = training(args.method)(method.params, method.n_classes, method.embed_dim)  # with its head and loss
    data, meta["leak"] = training_data(method, args.splits, args.decoded, params.model.image_size)
    meta["select"] = params.train.select
    log.info(
        "%s on %s: %d train / %d val images, %d classes, device %s%s",
        args.method, args.dataset, len(data["train"].labels), len(data["val"].labels), n_classes, device,
        f", {distributed.world().size} processes" if distributed.world().size > 1 else "",
    )
    budget = run_budget(params, args.dataset, train_params, args.splits)
    if budget is not None:
        log.info("budget: %d %s (the schedule steps every %g)", budget.amount, budget.kind,
                 budget.amount / budget.epochs)
    result = fit(
        method, backbone, data["train"], data["val"], train_params,
        seed=args.seed, device=device, curve_path=args.curve, resume_dir=args.resume_dir,
        context={
            "dataset": args.dataset, "model": dataclasses.asdict(params.model), "splits": folder_digest(args.splits),
        },
        scorer=validation_scorer(params, args.splits, args.decoded, device),
        budget=budget,
    )
    if not distributed.is_main():
        return  # rank 0 writes the checkpoint
    backbone.load_state_dict(result.backbone_state)
    head = method.head()
    if head is not None and result.head_state is not None:
        head.load_state_dict(result.head_state)
    meta.update(best_epoch=result.best_epoch, best_val_loss=result.best_val_loss,
                epochs=train_params.epochs if budget is None else len(result.history))
    if result.best_score is not None:
        meta["best_val_score"] = result.best_score
    if budget is not None:  # train.budget steps or images: what the run used (its history's last row)
        last = result.history[-1]
        meta["budget"] = budget_record(budget, last["steps"], last["images"])
    save_checkpoint(args.out, backbone, head, meta)
    clear_resume(args.resume_dir)  # only now: a kill before this line resumes at the end
    score = f", {params.train.select} {result.best_score:.4f}" if result.best_score is not None else ""
    log.info("kept epoch %d by %s (val loss %.4f%s) -> %s", result.best_epoch, params.train.select,
             result.best_val_loss, score, args.out)


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
    data = {}
    for name, table in tables.items():
        if name != "train":
            data[name] = own(table)
            continue
        anchors = table["row"].to_numpy()
        if not np.array_equal(labels[anchors], table["label"].to_numpy()):
            raise PipelineError(f"{name} and pool.csv disagree on labels; re-run the split stage")
        data[name] = SplitData(pixels, labels, _negatives(table), anchors=anchors)
    return data


def _negatives(table: pd.DataFrame) -> np.ndarray | None:
    return table["negative_label"].to_numpy() if "negative_label" in table.columns else None


if __name__ == "__main__":
    main()
