"""source@D: where dataset D's images come from, in a form DVC can watch: `data/sources/D/`.

For a dataset of your own, `images` is a link to the folder (or to the CSV's root) and, for a
CSV, `labels.csv` is a link to the table. `download@D` depends on both, and DVC hashes what a
link points to: adding, removing or editing an image or a row reruns the download and what
follows, and nothing else; when nothing changed, nothing runs. A link is the only way to hand
DVC a path that is a param: `dvc.yaml` cannot look `sources.<name>.folder` up per dataset
(no nested `${...}`), and a stage marked `always_changed` would run every time.
A registered dataset gets a small fixed note instead (its download stage fetches it).
`source.json` records what was linked. The folder is replaced whole; links are removed, never
followed, when it is. It is neither cached by DVC (that would copy your images) nor seen by git
(`.gitignore`): `dvc exp run` commits every file git does not ignore, and would store the files
behind a link, so your images would reach every experiment's commit and a git remote.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import atomic_dir
from stages.lib.datasets import DATASETS
from stages.lib.datasets.own import FolderSource, check_present, is_own, resolve
from stages.lib.errors import PipelineError, stage_main

log = logging.getLogger("stages.source")

IMAGES = "images"  # the link download@D depends on
TABLE = "labels.csv"  # a CSV source's table, linked
NOTE = "source.json"


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("source", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name (registered, or yours: sources.<name> with folder, or csv and root)")
    p.add_argument("--out", type=Path, required=True, help="output folder (data/sources/<dataset>)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    source = params.sources.get(args.dataset)
    base = args.params.resolve().parent
    with atomic_dir(args.out) as tmp:
        if is_own(source):
            check_present(args.dataset, source, base)
            if isinstance(source, FolderSource):
                note = {"dataset": args.dataset, "kind": "folder", "folder": str(resolve(source.folder, base))}
                os.symlink(note["folder"], tmp / IMAGES, target_is_directory=True)
            else:
                note = {"dataset": args.dataset, "kind": "csv", "csv": str(resolve(source.csv, base)),
                        "root": str(resolve(source.root, base))}
                os.symlink(note["root"], tmp / IMAGES, target_is_directory=True)
                os.symlink(note["csv"], tmp / TABLE)
        elif args.dataset in DATASETS:
            note = {"dataset": args.dataset, "kind": "registered"}
            (tmp / IMAGES).mkdir()
            (tmp / IMAGES / "README").write_text(
                f"{args.dataset} is registered: download@{args.dataset} fetches it (sources.{args.dataset}).\n"
            )
        else:
            raise PipelineError(
                f"{args.dataset} is neither registered ({', '.join(DATASETS.names())}) nor defined in sources; "
                f"add sources.{args.dataset} with folder, or csv and root"
            )
        (tmp / NOTE).write_text(json.dumps(note, indent=2, sort_keys=True) + "\n")
    log.info("%s: %s", args.dataset, ", ".join(f"{k} {v}" for k, v in note.items() if k != "dataset"))


if __name__ == "__main__":
    main()
