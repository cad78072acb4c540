"""decode@D: every image of the dataset decoded once, RGB, resized to `model.image_size`, as one
memory-mappable uint8 array (`images.npy`, manifest order) that training and embedding read."""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.errors import stage_main

log = logging.getLogger("stages.decode")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("decode", __doc__.splitlines()[0])
    p.add_argument("--raw", type=Path, required=True, help="downloaded dataset folder (data/raw/<dataset>)")
    p.add_argument("--out", type=Path, required=True, help="output file (data/decoded/<dataset>.npy)")
    args = p.parse_args(argv)
    # imported only now, so that `--help` answers at once
    from stages.lib.decoded import decode_to_file
    from stages.lib.manifest import read_manifest

    params = cli.params_of(args)
    manifest = read_manifest(args.raw)
    paths = [args.raw / rel for rel in manifest["path"]]
    size = params.model.image_size
    decode_to_file(paths, size, args.out, desc=f"decode {args.raw.name}")
    log.info("decoded %d images at %dx%d -> %s", len(paths), size, size, args.out)


if __name__ == "__main__":
    main()
