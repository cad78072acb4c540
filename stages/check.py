"""check: params.yaml validated once, before any other stage runs (or DVC deletes its outputs).

Every stage that starts the pipeline depends on this stage's output, so a typo or an invalid value
(`dvc exp run -S shots=-1`, a dataset or method name that is not registered) stops here with one
line that names the key and the accepted values, before any later stage removes what it wrote last
time. The output is the same few bytes whatever the params, so it never makes a later stage rerun.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import write_text
from stages.lib.errors import stage_main

log = logging.getLogger("stages.check")

CHECKED = "params.yaml is valid\n"


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("check", __doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="marker file the first stages depend on (data/checked)")
    args = p.parse_args(argv)
    cli.params_of(args)  # raises PipelineError, printed as one line, on anything invalid
    write_text(args.out, CHECKED)
    log.info("%s is valid", args.params)


if __name__ == "__main__":
    main()
