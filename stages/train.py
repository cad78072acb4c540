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
    import torch


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
    from stages.lib.training_data import run_budget, training_data, validation_scorer
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


if __name__ == "__main__":
    main()
