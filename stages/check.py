"""check: params.yaml validated once, before any other stage runs (or DVC deletes its outputs).

Every stage that starts the pipeline depends on this stage's output, so a typo or an invalid value
(`dvc exp run -S shots=-1`, a dataset, method or timm model name that does not exist) stops here
with one line that names the key and the accepted values, before any later stage removes what it
wrote last time. The output is the same few bytes whatever the params, so it never makes a later
stage rerun. A refused value stays in params.yaml (DVC wrote it there): the line names
`python -m stages.check --restore`, which puts back the params of the last run that passed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import write_text
from stages.lib.errors import PipelineError, stage_main
from stages.lib.model_names import CACHE, check_names
from stages.lib.params_restore import RESTORE_HINT, restore

log = logging.getLogger("stages.check")

CHECKED = "params.yaml is valid\n"


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("check", __doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="marker file the first stages depend on (data/checked)")
    p.add_argument("--restore", action="store_true",
                   help="put back the params of the last run that passed the check (dvc.lock), or the committed "
                        "ones; the current file is kept as data/params.yaml.refused")
    args = p.parse_args(argv)
    if args.restore:
        log.info("%s", restore(args.params, args.params.parent))
        return
    if args.out is None:
        p.error("--out is required (or --restore)")
    try:
        params = cli.params_of(args)
        check_names(params, str(args.params), args.params.parent / CACHE)  # timm's registry: here, not in every stage
    except PipelineError as exc:
        hint = RESTORE_HINT if args.params == Path("params.yaml") else f"{RESTORE_HINT} --params {args.params}"
        raise PipelineError(f"{exc}; {args.params} still holds it: `{hint}` puts back the params of the last run "
                            "that passed (and keeps this file as data/params.yaml.refused)") from None
    write_text(args.out, CHECKED)
    log.info("%s is valid", args.params)


if __name__ == "__main__":
    main()
