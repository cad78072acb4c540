"""train@D-M-S: fine-tune the backbone with method M and training seed S on dataset D's training split.

Selects the epoch with the lowest validation loss and writes it to `models/D/M/seedS/`
(`model.safetensors`, `meta.json`); per-epoch losses go to a CSV that DVC draws as a plot.
With `train.processes: N > 1` the stage runs itself as N processes under torchrun
(DistributedDataParallel, `stages.lib.distributed`); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import torch

from stages.lib import cli, distributed
from stages.lib.device import configure_determinism, pick_device
from stages.lib.errors import PipelineError, stage_main
from stages.lib.methods import METHODS
from stages.lib.models import build_backbone, save_checkpoint
from stages.lib.splitdata import read_classes, read_table, split_pixels
from stages.lib.trainer import SplitData, clear_resume, fit, folder_digest, write_curve
from stages.weights import weights_file

log = logging.getLogger("stages.train")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("train", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name")
    p.add_argument("method", help=f"one of: {', '.join(METHODS.names())}")
    p.add_argument("--seed", type=int, required=True, help="training seed (one of params.yaml `seeds`)")
    p.add_argument("--splits", type=Path, required=True, help="split tables (data/splits/<dataset>)")
    p.add_argument("--decoded", type=Path, required=True, help="decoded images (data/decoded/<dataset>.npy)")
    p.add_argument("--weights", type=Path, required=True, help="pretrained weights folder (models/pretrained)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder (models/<dataset>/<method>/seed<S>)")
    p.add_argument("--curve", type=Path, required=True, help="per-epoch loss CSV (plots/train/...)")
    p.add_argument(
        "--resume-dir", type=Path, default=None,
        help="folder for the per-epoch resume checkpoint, kept between runs (data/cache/resume/...); "
        "default: no resuming",
    )
    args = p.parse_args(argv)
    params = cli.params_of(args)
    method_cls = METHODS.get(args.method)
    if args.seed not in params.seeds:
        raise PipelineError(f"--seed {args.seed} is not in params.yaml seeds {params.seeds}; run dvc repro")
    processes = params.train.processes
    if processes > 1 and method_cls.trains and not distributed.launched():
        hint = (f"re-run to continue from the last epoch saved in {args.resume_dir}" if args.resume_dir
                else "re-run to train again")
        distributed.launch("stages.train", list(sys.argv[1:] if argv is None else argv), processes, hint=hint)
        log.info("%d training processes finished -> %s", processes, args.out)
        return
    with distributed.reporting_to_launcher():
        if distributed.launched():
            if distributed.launched_size() != processes:
                raise PipelineError(
                    f"torchrun started {distributed.launched_size()} processes but train.processes is {processes}; "
                    f"set train.processes: {distributed.launched_size()} (the whole run's processes)"
                )
            device = pick_device(params.train.device, distributed.local_rank(), processes)
            distributed.init(device)
        else:
            device = pick_device(params.train.device)
        try:
            _train(args, params, method_cls, device)
        finally:
            distributed.finish()


def _train(args, params, method_cls, device: torch.device) -> None:
    """Train on this process (one rank of several, or alone); rank 0 writes the results."""
    classes = read_classes(args.splits)
    torch.manual_seed(args.seed)
    configure_determinism(params.train.deterministic, device)
    backbone = build_backbone(params.model.name, weights_file(args.weights))
    method = method_cls(params.method_params(args.method), len(classes), backbone.num_features)
    meta = {
        "dataset": args.dataset,
        "method": args.method,
        "model": params.model.name,
        "image_size": params.model.image_size,
        "pretrained": params.model.pretrained,
        "classes": classes,
        "seed": args.seed,
    }
    if not method.trains:
        if not distributed.is_main():
            return  # rank 0 writes the checkpoint
        write_curve(args.curve, [])
        save_checkpoint(args.out, backbone, None, {**meta, "best_epoch": 0, "epochs": 0})
        log.info("%s: no training; saved the starting weights to %s", args.method, args.out)
        return
    size = params.model.image_size
    data = {}
    for name in ("train", "val"):
        study = method.study_tables.get(name)  # the study's triplet lists, where the split has them
        table = read_table(args.splits, study if study and (args.splits / f"{study}.csv").is_file() else name)
        negatives = table["negative_label"].to_numpy() if "negative_label" in table.columns else None
        data[name] = SplitData(split_pixels(args.decoded, table, size), table["label"].to_numpy(), negatives)
    log.info(
        "%s on %s: %d train / %d val images, %d classes, device %s%s",
        args.method, args.dataset, len(data["train"].labels), len(data["val"].labels), len(classes), device,
        f", {distributed.world().size} processes" if distributed.world().size > 1 else "",
    )
    result = fit(
        method, backbone, data["train"], data["val"], params.train,
        seed=args.seed, device=device, curve_path=args.curve, resume_dir=args.resume_dir,
        context={
            "dataset": args.dataset, "model": dataclasses.asdict(params.model), "splits": folder_digest(args.splits),
        },
    )
    if not distributed.is_main():
        return  # rank 0 writes the checkpoint
    backbone.load_state_dict(result.backbone_state)
    head = method.head()
    if head is not None and result.head_state is not None:
        head.load_state_dict(result.head_state)
    meta.update(best_epoch=result.best_epoch, best_val_loss=result.best_val_loss, epochs=params.train.epochs)
    save_checkpoint(args.out, backbone, head, meta)
    clear_resume(args.resume_dir)  # only now: a kill before this line resumes at the end
    log.info("best epoch %d (val loss %.4f) -> %s", result.best_epoch, result.best_val_loss, args.out)


if __name__ == "__main__":
    main()
