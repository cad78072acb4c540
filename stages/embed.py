"""embed@D-M-S: embeddings of every test image from the selected checkpoint (no augmentation).

Writes `data/embeddings/D/M/seedS.npz`: `embeddings` (N x D float32, always computed in fp32),
`labels`, `paths`, `rows` (of the decoded array), `classes`, and `run` (JSON: the training run's
`leak` counts, `triplet_pool`, `select` rule, under `train.budget` steps or images the `budget` it
used and, under `split.classes: unseen`, `protocol` (its training and test classes), from its
meta.json, for the evaluate stage to record).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.errors import PipelineError, stage_main

log = logging.getLogger("stages.embed")

# What the training run recorded (meta.json) that the metrics carry.
RUN_KEYS = ("leak", "triplet_pool", "select", "budget", "protocol")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("embed", __doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="checkpoint folder (models/<dataset>/<method>/seed<S>)")
    p.add_argument("--splits", type=Path, required=True, help="split tables (data/splits/<dataset>)")
    p.add_argument("--decoded", type=Path, required=True, help="decoded images (data/decoded/<dataset>.npy)")
    p.add_argument(
        "--out", type=Path, required=True, help="output .npz (data/embeddings/<dataset>/<method>/seed<S>.npz)"
    )
    args = p.parse_args(argv)
    # imported only now, so that `--help` answers at once
    import numpy as np

    from stages.lib.arrays import save_npz
    from stages.lib.device import configure_determinism, pick_device
    from stages.lib.embedding import embed_pixels
    from stages.lib.models import load_backbone
    from stages.lib.splitdata import read_table, split_pixels

    params = cli.params_of(args)
    backbone, meta = load_backbone(args.model)
    size = int(meta["image_size"])
    if size != params.model.image_size:
        raise PipelineError(
            f"{args.model} was trained at image size {size}, params say {params.model.image_size}; run dvc repro"
        )
    table = read_table(args.splits, "test")
    pixels = split_pixels(args.decoded, table, size)
    device = pick_device(params.train.device)
    configure_determinism(params.train.deterministic, device)
    # Always fp32: the test images are embedded in full precision whatever training used.
    embeddings = embed_pixels(backbone, pixels, device, params.embed.batch_size, "fp32")
    if not np.isfinite(embeddings).all():
        raise PipelineError(f"the model in {args.model} gives non-finite embeddings; its training diverged")
    save_npz(
        args.out,
        embeddings=embeddings,
        labels=table["label"].to_numpy(dtype=np.int64),
        paths=table["path"].to_numpy(dtype=str),
        classes=np.array(meta["classes"], dtype=str),
        rows=table["row"].to_numpy(dtype=np.int64),
        run=np.array(json.dumps({k: meta[k] for k in RUN_KEYS if k in meta}, sort_keys=True)),
    )
    log.info("%d test embeddings of dimension %d -> %s", *embeddings.shape, args.out)


if __name__ == "__main__":
    main()
