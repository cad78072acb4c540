"""evaluate@D-M: K-means accuracy (Hungarian-matched, each image scored against its own label),
NMI and ARI of the test embeddings, written to `metrics/D/M.json` for `dvc metrics`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stages.lib import cli
from stages.lib.arrays import load_npz
from stages.lib.atomic import write_json
from stages.lib.errors import stage_main
from stages.lib.metrics import clustering_scores

log = logging.getLogger("stages.evaluate")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("evaluate", __doc__.splitlines()[0])
    p.add_argument("--embeddings", type=Path, required=True, help="embeddings .npz from the embed stage")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON (metrics/<dataset>/<method>.json)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    data = load_npz(args.embeddings, ("embeddings", "labels"))
    labels = data["labels"]
    scores = clustering_scores(
        data["embeddings"], labels, n_init=params.evaluate.kmeans_n_init, seed=params.evaluate.kmeans_seed
    )
    metrics = {
        **{k: round(v, 6) for k, v in scores.items()},
        "n_test": int(len(labels)),
        "n_classes": int(len(np.unique(labels))),
    }
    write_json(args.out, metrics)
    log.info(
        "K-means accuracy %.4f, NMI %.4f, ARI %.4f -> %s", scores["kmeans_acc"], scores["nmi"], scores["ari"], args.out
    )


if __name__ == "__main__":
    main()
